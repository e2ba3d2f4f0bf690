"""mmdet's COCO dataset that refuses slices masked in another lung-mask mode."""
import json
import warnings

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from mmengine.fileio import get_local_path

from ..ct.lung_mask_mode import check_lung_mask_mode

__all__ = ['LungCocoDataset']


@DATASETS.register_module()
class LungCocoDataset(CocoDataset):
    """:class:`CocoDataset` of ``data_prep/luna16_to_coco.py``'s export, checked for the
    lung-mask mode.

    In ``blank`` mode the pixels outside the lung mask are 0 in the exported PNGs, in
    ``filter`` mode they are kept (see :mod:`projects.lung_nodule.ct.slice_image`). A
    model trained on one kind of slices and run on the other sees pixels it never saw:
    the export writes its mode into ``info['lung_mask_mode']`` and this dataset refuses
    an annotation file whose mode differs from ``lung_mask_mode`` (the lung configs set
    it from their top-level ``lung_mask_mode``). A file without the key comes from an
    export made before the modes existed, which always blanked: it counts as
    ``'blank'``, with a warning.

    Args:
        lung_mask_mode: The mode the model is trained / run in.
        **kwargs: Arguments of :class:`CocoDataset`.

    Raises:
        ValueError: At load time, when the file's mode differs (the message names the
            file and both modes), or when either mode is unknown.
    """

    def __init__(self, *args, lung_mask_mode: str = 'blank', **kwargs) -> None:
        self.lung_mask_mode = check_lung_mask_mode(lung_mask_mode)
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> list:
        """Check the annotation file's mode, then load it as :class:`CocoDataset` does."""
        with get_local_path(self.ann_file, backend_args=self.backend_args) as local_path:
            with open(local_path, encoding='utf-8') as handle:
                info = json.load(handle).get('info') or {}
        file_mode = info.get('lung_mask_mode')
        if file_mode is None:
            warnings.warn(f'{self.ann_file} has no info["lung_mask_mode"] (exported before the '
                          f'lung-mask modes existed): taken as "blank"', UserWarning)
            file_mode = 'blank'
        try:
            check_lung_mask_mode(file_mode)
        except ValueError as exc:
            raise ValueError(f'{self.ann_file}: info["lung_mask_mode"]: {exc}') from None
        if file_mode != self.lung_mask_mode:
            raise ValueError(
                f'{self.ann_file} was exported with lung_mask_mode={file_mode!r} but the dataset '
                f'is configured with lung_mask_mode={self.lung_mask_mode!r}: export the slices '
                f'again with data_prep/luna16_to_coco.py --lung-mask-mode '
                f'{self.lung_mask_mode}, or set lung_mask_mode={file_mode!r} in the config '
                f'(top-level and in the train/val/test datasets)')
        return super().load_data_list()
