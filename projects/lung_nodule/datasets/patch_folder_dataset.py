"""ImageNet-style class folders whose label indices follow ``classes``."""
from typing import List, Tuple

from mmengine.logging import MMLogger
from mmpretrain.datasets import CustomDataset
from mmpretrain.datasets.custom import find_folders, get_samples
from mmpretrain.registry import DATASETS

__all__ = ['PatchFolderDataset']


@DATASETS.register_module()
class PatchFolderDataset(CustomDataset):
    """:class:`CustomDataset` over ``<data_prefix>/<class name>/*.png`` folders
    that numbers the classes in the order of ``metainfo['classes']``.

    mmpretrain's ``CustomDataset`` always numbers sub-folders alphabetically,
    even when ``classes`` is given (it only checks their count). With the
    lung patches that makes ``nodule`` label 0 and ``normal`` label 1 while
    ``classes=('normal', 'nodule')`` names label 1 ``nodule``: every metric
    and checkpoint meta would then call the wrong class positive. Here label
    ``i`` is the folder named ``classes[i]``, and the folders must be exactly
    the classes (a missing or extra folder is an error, not a silent shift).

    Without an ``ann_file`` the layout is::

        data_prefix/
        ├── normal/  *.png  -> label 0
        └── nodule/  *.png  -> label 1

    With an ``ann_file`` it behaves as ``CustomDataset`` (labels come from
    the file).

    Args:
        metainfo (dict): Must hold ``classes``, e.g.
            ``dict(classes=('normal', 'nodule'))``.
        **kwargs: Arguments of :class:`CustomDataset` (``data_root``,
            ``data_prefix``, ``pipeline``, ``ann_file``, ...).
    """

    def _find_samples(self) -> List[Tuple[str, int]]:
        """Collect ``(relative path, label)`` pairs from the class folders."""
        if self.CLASSES is None:
            raise ValueError(
                f'{type(self).__name__} needs metainfo=dict(classes=...) to '
                f'number the class folders of {self.img_prefix}')
        classes = tuple(self.CLASSES)
        folders, _ = find_folders(self.img_prefix)
        if sorted(folders) != sorted(classes):
            raise ValueError(
                f'The class folders of {self.img_prefix} are {folders}, '
                f'expected exactly {list(classes)}')
        folder_to_idx = {name: idx for idx, name in enumerate(classes)}
        samples, empty_folders = get_samples(
            self.img_prefix, folder_to_idx, is_valid_file=self.is_valid_file)
        if len(samples) == 0:
            raise RuntimeError(
                f'Found 0 files in the class folders of {self.img_prefix}. '
                f'Supported extensions are: {", ".join(self.extensions)}')
        if empty_folders:
            MMLogger.get_current_instance().warning(
                f'No image in the class folder(s) {sorted(empty_folders)} '
                f'of {self.img_prefix}')
        self.folder_to_idx = folder_to_idx
        return samples
