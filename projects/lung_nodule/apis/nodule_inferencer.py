"""Whole-scan inference: a CT scan in, its nodules out, measured in world mm.

Like mmdet's ``DetInferencer``: built once from a config and a checkpoint, then called
on scans. The pipeline, per scan:

1. read (:func:`projects.lung_nodule.ct.read_scan`: ``.mhd``, NIfTI, NRRD, DICOM folder);
2. lung mask (:class:`projects.lung_nodule.ct.LungMask`); only slices that contain lung
   go on (a scan without any is an error naming the file);
3. slice images by :func:`projects.lung_nodule.ct.slice_to_uint8` -- the function the
   COCO export uses -- in the config's ``lung_mask_mode``; resampled in-plane when the
   pixel size is far from ``infer_pixel_spacing_mm`` (:mod:`.inplane`);
4. the network on batches of slices (:class:`.slice_predictor.SlicePredictor`; the real
   one is :class:`.mmdet_predictor.MMDetSlicePredictor`); masks back on the scan's grid;
5. in ``filter`` mode, detections with less than ``MIN_IN_LUNG_FRACTION`` of their mask
   in the lung are dropped (in ``blank`` mode the network never saw outside the lung);
6. 3D linking (:func:`projects.lung_nodule.ct.linking.link_detections`), then every
   nodule down to the model's test ``score_thr`` (at most :data:`MAX_CANDIDATES`, the
   most probable first) into one label volume, measured by
   :func:`projects.lung_nodule.ct.measure.measure_label_volume`.

Reading and the lung mask are :meth:`NoduleInferencer.prepare` (CPU, no network), so a
cohort run can prepare the next scans in worker threads while the network runs.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
from tqdm import tqdm

from ..ct.geometry import ScanGeometry
from ..ct.io import CTScan, read_scan
from ..ct.linking import SliceDetections, link_detections, linked_to_label_volume
from ..ct.lung import LungMask
from ..ct.measure import NoduleMeasurement, measure_label_volume
from ..ct.slice_image import (DEFAULT_LUNG_MASK_MODE, MIN_IN_LUNG_FRACTION, check_lung_mask_mode,
                              mask_in_lung_fraction, slice_to_uint8)
from .inplane import InPlaneResampling
from .slice_predictor import SlicePredictor

__all__ = ['DEFAULT_READING_SCORE_THR', 'DetectedNodule', 'MAX_CANDIDATES', 'NoLungError',
           'NoduleInferencer', 'PreparedScan', 'ScanResult']

#: At most this many nodules per scan go into ``candidates.csv`` (LUNA16's FROC needs
#: the low-probability tail, but no scan has 100 nodules).
MAX_CANDIDATES = 100
#: Default threshold of what a person reads (``nodules.csv``, label volume, PNGs, SEG);
#: ``candidates.csv`` is not filtered by it.
DEFAULT_READING_SCORE_THR = 0.5
STAGES = ('read', 'lung_mask', 'slices', 'network', 'link_measure')


class NoLungError(ValueError):
    """The lung mask of a scan is empty (not a chest CT, or not in HU)."""


class _StageTimer:
    """Wall-clock seconds per named stage, summed over repeated entries."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


@dataclass(frozen=True)
class DetectedNodule:
    """One 3D nodule found in a scan.

    Attributes:
        label: Its value in :attr:`ScanResult.labels` (1 = most probable).
        probability: The linked nodule's probability (see ``ct.linking``).
        measurement: Its measurement in world mm (``ct.measure``).
        slice_scores: Network score on each slice it was linked over.
    """

    label: int
    probability: float
    measurement: NoduleMeasurement
    slice_scores: dict[int, float]


@dataclass
class PreparedScan:
    """A scan read and lung-masked, ready for the network (see :meth:`NoduleInferencer.prepare`)."""

    scan: CTScan
    lungs: LungMask
    lung_slices: list[int]
    timings: dict[str, float]


@dataclass
class ScanResult:
    """Everything found in one scan.

    Attributes:
        scan: The scan (its array, geometry, ``scan_id``, ``source_files``).
        candidates: Every linked nodule with probability >= the model's test
            ``score_thr``, most probable first, at most :data:`MAX_CANDIDATES`.
        labels: uint16 ``(z, y, x)`` label volume of ``candidates`` (value =
            ``DetectedNodule.label``; where two overlap, the more probable one).
        slices_used: Slice indices that went through the network (those with lung).
        lung_mask_mode: ``blank`` or ``filter``, the config's.
        resampling: The in-plane resampling applied, or ``None``.
        model_score_thr: The model's test ``score_thr``.
        timings: Seconds per stage (``read``, ``lung_mask``, ``slices``, ``network``,
            ``link_measure``).
    """

    scan: CTScan
    candidates: list[DetectedNodule]
    labels: np.ndarray
    slices_used: list[int]
    lung_mask_mode: str
    resampling: InPlaneResampling | None
    model_score_thr: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def scan_id(self) -> str:
        return self.scan.scan_id

    @property
    def geometry(self) -> ScanGeometry:
        return self.scan.geometry

    def readable(self, score_thr: float) -> list[DetectedNodule]:
        """The candidates a person reads: probability >= ``score_thr``."""
        return [n for n in self.candidates if n.probability >= score_thr]


class NoduleInferencer:
    """Find, segment and measure the nodules of CT scans with a trained Mask R-CNN.

    Args:
        config: The model's config (file or ``mmengine.Config``); its
            ``lung_mask_mode`` and ``infer_pixel_spacing_mm`` are used.
        checkpoint: The trained weights.
        device: ``'cpu'`` or ``'cuda[:N]'``.
        batch_size: Slices per forward.
        amp: Mixed precision forward (CUDA).
        score_thr: What a person reads (``nodules.csv`` etc.): nodules with probability
            >= this; ``None`` = :data:`DEFAULT_READING_SCORE_THR`. Candidates for FROC
            always go down to the model's own test ``score_thr``.

    Example:
        >>> inferencer = NoduleInferencer('configs/lung/mask_rcnn_r101_fpn_all.py', 'epoch_24.pth')
        >>> result = inferencer('scan.mhd')
        >>> [(n.probability, n.measurement.long_axis_mm) for n in result.readable(0.5)]
    """

    def __init__(self, config, checkpoint: str | os.PathLike, device: str = 'cpu',
                 batch_size: int = 4, amp: bool = False, score_thr: float | None = None) -> None:
        from .mmdet_predictor import MMDetSlicePredictor  # torch only when a model is built
        predictor = MMDetSlicePredictor(config, checkpoint, device=device, amp=amp)
        cfg = predictor.cfg
        self._setup(predictor, cfg.get('lung_mask_mode', DEFAULT_LUNG_MASK_MODE),
                    cfg.get('infer_pixel_spacing_mm', None), batch_size, score_thr)

    @classmethod
    def from_predictor(cls, predictor: SlicePredictor, lung_mask_mode: str = DEFAULT_LUNG_MASK_MODE,
                       infer_pixel_spacing_mm: float | None = None, batch_size: int = 4,
                       score_thr: float | None = None) -> 'NoduleInferencer':
        """An inferencer around any :class:`SlicePredictor` (tests plug an oracle here)."""
        self = cls.__new__(cls)
        self._setup(predictor, lung_mask_mode, infer_pixel_spacing_mm, batch_size, score_thr)
        return self

    def _setup(self, predictor: SlicePredictor, lung_mask_mode: str,
               infer_pixel_spacing_mm: float | None, batch_size: int,
               score_thr: float | None) -> None:
        check_lung_mask_mode(lung_mask_mode)
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        self.predictor = predictor
        self.lung_mask_mode = lung_mask_mode
        self.infer_pixel_spacing_mm = (None if infer_pixel_spacing_mm is None
                                       else float(infer_pixel_spacing_mm))
        self.batch_size = int(batch_size)
        self.score_thr = DEFAULT_READING_SCORE_THR if score_thr is None else float(score_thr)

    # ---------------------------------------------------------------- stages
    def prepare(self, source: str | os.PathLike | CTScan,
                series_uid: str | None = None) -> PreparedScan:
        """Read a scan and find its lung slices (no network; thread-safe).

        Raises:
            ScanReadError: The scan cannot be read (the message names the file).
            NoLungError: No lung in the scan.
        """
        timer = _StageTimer()
        with timer('read'):
            scan = source if isinstance(source, CTScan) else read_scan(source, series_uid=series_uid)
        with timer('lung_mask'):
            lungs = LungMask(scan.array, scan.geometry.spacing_xyz)
            lung_slices = [int(z) for z in np.flatnonzero(lungs.coarse_area_mm2() > 0)]
            if not lung_slices:
                raise NoLungError(f'{scan.path}: no lung found in the scan (no air region '
                                  'inside the body below -320 HU): not a chest CT in HU?')
            if self.lung_mask_mode == 'blank':
                lungs.slices(lung_slices)  # every slice image needs it; computed here once
        return PreparedScan(scan, lungs, lung_slices, timer.seconds)

    def run(self, prepared: PreparedScan, progress: bool = False) -> ScanResult:
        """The network, linking and measurement on a prepared scan."""
        scan, lungs = prepared.scan, prepared.lungs
        timer = _StageTimer()
        timer.seconds.update(prepared.timings)
        shape_zyx = scan.array.shape
        resampling = InPlaneResampling.plan(scan.geometry.spacing_xyz, shape_zyx[1:],
                                            self.infer_pixel_spacing_mm)
        detections: list[SliceDetections] = []
        zs = prepared.lung_slices
        batches = [zs[i:i + self.batch_size] for i in range(0, len(zs), self.batch_size)]
        bar = tqdm(total=len(zs), desc=f'slices {scan.scan_id[-12:]}', unit='slice',
                   leave=False, disable=not progress)
        for batch in batches:
            with timer('slices'):
                images = np.stack([slice_to_uint8(scan, z, lungs, mode=self.lung_mask_mode)
                                   for z in batch])
                if resampling is not None:
                    images = resampling.to_model(images)
            with timer('network'):
                predictions = self.predictor(images, batch, scan)
            with timer('slices'):
                for z, prediction in zip(batch, predictions):
                    detections.append(self._slice_detections(z, prediction, lungs, resampling))
            bar.update(len(batch))
        bar.close()
        with timer('link_measure'):
            candidates, labels = self._nodules(detections, scan)
        return ScanResult(scan=scan, candidates=candidates, labels=labels, slices_used=list(zs),
                          lung_mask_mode=self.lung_mask_mode, resampling=resampling,
                          model_score_thr=float(self.predictor.score_thr),
                          timings=dict(timer.seconds))

    def __call__(self, source: str | os.PathLike | CTScan, series_uid: str | None = None,
                 progress: bool = False) -> ScanResult:
        """Run the whole pipeline on one scan (see the module docstring)."""
        return self.run(self.prepare(source, series_uid), progress=progress)

    # ---------------------------------------------------------------- helpers
    def _slice_detections(self, z: int, prediction, lungs: LungMask,
                          resampling: InPlaneResampling | None) -> SliceDetections:
        masks, scores = prediction.masks, np.asarray(prediction.scores, dtype=np.float64)
        if resampling is not None:
            masks = resampling.to_scan(masks)
        keep = masks.any(axis=(1, 2))
        if self.lung_mask_mode == 'filter' and keep.any():
            lung = lungs.slice(z)
            keep &= np.array([mask_in_lung_fraction(m, lung) >= MIN_IN_LUNG_FRACTION
                              for m in masks])
        return SliceDetections(z_index=int(z), masks=masks[keep], scores=scores[keep])

    def _nodules(self, detections: Sequence[SliceDetections],
                 scan: CTScan) -> tuple[list[DetectedNodule], np.ndarray]:
        shape = scan.array.shape
        linked = link_detections(detections, shape)
        thr = float(self.predictor.score_thr)
        linked = sorted((n for n in linked if n.probability >= thr),
                        key=lambda n: -n.probability)[:MAX_CANDIDATES]
        # The more probable nodule keeps a voxel two of them claim (first given wins).
        labels = linked_to_label_volume(linked, shape)
        measured = {m.nodule_id: m for m in measure_label_volume(labels, scan.geometry)}
        candidates = []
        for rank, nodule in enumerate(linked, start=1):
            if rank in measured:  # a nodule fully covered by a more probable one is gone
                candidates.append(DetectedNodule(rank, float(nodule.probability),
                                                 measured[rank], dict(nodule.scores)))
        return candidates, labels
