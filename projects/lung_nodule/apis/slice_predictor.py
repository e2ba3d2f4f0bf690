"""The seam between whole-scan inference and the network.

The pipeline (:class:`~projects.lung_nodule.apis.nodule_inferencer.NoduleInferencer`)
only needs "slice images in, instance masks and scores out". Keeping that behind a
small protocol lets tests plug an oracle that returns the true cross-sections, so that
format, geometry, linking and measurement are checked exactly, apart from what a
network happens to learn. Torch-free: the real predictor is in ``mmdet_predictor``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from ..ct.io import CTScan

__all__ = ['SlicePrediction', 'SlicePredictor']


@dataclass(frozen=True)
class SlicePrediction:
    """The instances found on one slice image.

    Attributes:
        masks: bool ``(n, rows, cols)``, the size of the image that was given.
        scores: float ``(n,)`` in ``[0, 1]``.
    """

    masks: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if self.masks.ndim != 3 or self.masks.dtype != bool:
            raise ValueError(f'masks must be bool (n, rows, cols), got {self.masks.dtype} '
                             f'{self.masks.shape}')
        if self.scores.shape != (self.masks.shape[0], ):
            raise ValueError(f'scores must have shape ({self.masks.shape[0]},), '
                             f'got {self.scores.shape}')


@runtime_checkable
class SlicePredictor(Protocol):
    """Anything that segments nodules on a batch of slice images.

    Attributes:
        score_thr: The lowest score it reports (mmdet's ``test_cfg.rcnn.score_thr``):
            candidates for FROC go down to it.
    """

    score_thr: float

    def __call__(self, images: np.ndarray, z_indices: Sequence[int],
                 scan: 'CTScan') -> list[SlicePrediction]:
        """Segment each image.

        Args:
            images: uint8 ``(n, rows, cols)``, made by ``ct.slice_to_uint8`` (resampled
                in-plane when the inferencer resamples).
            z_indices: The slice index of each image in the scan.
            scan: The scan they come from. A network ignores ``z_indices`` and ``scan``;
                an oracle uses them to look up the truth.

        Returns:
            One :class:`SlicePrediction` per image, masks at the image's size.
        """
        ...
