"""Per-nodule Dice of the best-matching predicted mask."""
from typing import Dict, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric

from mmdet.registry import METRICS
from ..functional import best_match_dice, sample_masks


@METRICS.register_module()
class NoduleDiceMetric(BaseMetric):
    """Dice of each ground-truth nodule with the prediction overlapping it most.

    For every ground-truth mask of every image, the predicted mask (score >=
    ``score_thr``) with the highest Dice (equivalently, IoU) is its match; a
    nodule no prediction touches scores 0. Reported as the mean over all nodules
    (``dice``, misses included), the mean over the nodules some prediction
    touches (``dice_detected``: segmentation quality alone) and the fraction of
    nodules whose best Dice reaches ``hit_thr`` (``recall``).

    Args:
        score_thr (float): Predictions scoring below this are ignored. Defaults
            to 0.7 (Matterport's ``DETECTION_MIN_CONFIDENCE``).
        hit_thr (float): Dice a nodule needs to count in ``recall``. Defaults to
            2/3 (the Dice of a mask IoU of 0.5).
        collect_device (str): Device to collect results across ranks on.
            Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names. Defaults to
            ``'nodule'``.
    """
    default_prefix: Optional[str] = 'nodule'

    def __init__(self,
                 score_thr: float = 0.7,
                 hit_thr: float = 2 / 3,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.score_thr = score_thr
        self.hit_thr = hit_thr

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Store the best-match Dice of every ground-truth nodule.

        Args:
            data_batch (dict): A batch from the dataloader (unused).
            data_samples (Sequence[dict]): Predicted data samples with
                ``gt_instances`` (masks) and ``pred_instances``.
        """
        for data_sample in data_samples:
            sample = sample_masks(data_sample, self.score_thr)
            # one entry per image: ``evaluate(size)`` keeps ``size`` results
            self.results.append(
                best_match_dice(sample['gt_masks'], sample['pred_masks']).tolist())

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Average the per-nodule Dice values.

        Args:
            results (list): Per image, the Dice of each of its nodules, from
                every rank.

        Returns:
            dict: ``dice``, ``dice_detected``, ``recall`` and ``num_nodules``.
        """
        dice = np.asarray([d for image in results for d in image], dtype=np.float64)
        touched = dice[dice > 0]
        nan = float('nan')
        return {
            'dice': float(dice.mean()) if len(dice) else nan,
            'dice_detected': float(touched.mean()) if len(touched) else nan,
            'recall': float((dice >= self.hit_thr).mean()) if len(dice) else nan,
            'num_nodules': float(len(dice)),
        }

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(score_thr={self.score_thr}, '
                f'hit_thr={self.hit_thr:.4g}, prefix={self.prefix!r})')
