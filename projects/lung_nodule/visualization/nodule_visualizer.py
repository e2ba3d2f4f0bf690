"""mmdet's visualizer with one colour per nodule instead of one per class."""
from typing import List, Optional

import numpy as np
import torch
from mmengine.structures import InstanceData

from mmdet.registry import VISUALIZERS
from mmdet.structures.bbox import BaseBoxes
from mmdet.visualization import DetLocalVisualizer

#: Distinct, saturated RGB colours (matplotlib's tab10, brightened), cycled.
INSTANCE_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40),
                    (148, 103, 189), (140, 86, 75), (227, 119, 194), (188, 189, 34),
                    (23, 190, 207), (255, 255, 0)]


@VISUALIZERS.register_module()
class NoduleVisualizer(DetLocalVisualizer):
    """Draw every instance (box, mask, ``class: score``) in a colour of its own.

    With one class, mmdet's ``DetLocalVisualizer`` paints every nodule in the
    class colour; the paper's Fig. 4 tells nodules apart by colour. Used by
    ``DetVisualizationHook`` (``tools/test.py --show-dir``: the ground truth on
    the left, the predictions with their scores on the right) and by
    ``tools/browse_dataset.py``. Instances keep their class names in the text.

    Args:
        name (str): Name of the visualizer instance. Defaults to 'visualizer'.
        instance_palette (list[tuple], optional): RGB colours given to the
            instances of an image in order (cycled). Defaults to
            ``INSTANCE_PALETTE``.
        **kwargs: Arguments of :class:`mmdet.visualization.DetLocalVisualizer`.
    """

    def __init__(self,
                 name: str = 'visualizer',
                 instance_palette: Optional[List[tuple]] = None,
                 **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.instance_palette = [tuple(c) for c in (instance_palette or INSTANCE_PALETTE)]

    def _draw_instances(self, image: np.ndarray, instances: InstanceData,
                        classes: Optional[List[str]],
                        palette: Optional[List[tuple]]) -> np.ndarray:
        """Draw ``instances`` with instance ``i`` in ``instance_palette[i]``.

        Boxes may be ``BaseBoxes`` (as a pipeline leaves them) or tensors.

        Args:
            image (np.ndarray): RGB image to draw on.
            instances (InstanceData): Ground truth or predictions.
            classes (list[str], optional): Class names.
            palette (list[tuple], optional): Class colours (unused: one colour
                per instance instead).

        Returns:
            np.ndarray: The drawn RGB image.
        """
        labels = instances.labels.tolist() if 'labels' in instances else []
        if 'label_names' not in instances:
            names = [classes[label] if classes is not None else f'class {label}'
                     for label in labels]
        else:
            names = list(instances.label_names)
        recoloured = instances.clone()
        if isinstance(recoloured.get('bboxes', None), BaseBoxes):  # pipeline output
            recoloured.bboxes = recoloured.bboxes.tensor
        recoloured.labels = torch.arange(len(labels), dtype=torch.long)
        recoloured.label_names = names
        colours = [self.instance_palette[i % len(self.instance_palette)]
                   for i in range(max(len(labels), 1))]
        return super()._draw_instances(image, recoloured, classes, colours)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(name={self.instance_name!r}, '
                f'instances coloured from {len(self.instance_palette)} colours)')
