"""Area under the ROC curve of one class, an mmpretrain metric."""
from typing import List, Optional, Sequence, Union

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmpretrain.registry import METRICS
from scipy.stats import rankdata

__all__ = ['BinaryAUC', 'binary_auc']


def binary_auc(scores: np.ndarray, is_positive: np.ndarray) -> float:
    """ROC AUC from scores, by the Mann-Whitney rank statistic.

    Equal to the area under the (ties interpolated) ROC curve: the probability
    that a random positive scores above a random negative, ties counting half.

    Args:
        scores (np.ndarray): Shape (N, ), the score of the positive class.
        is_positive (np.ndarray): Shape (N, ), bool ground truth.

    Returns:
        float: The AUC in [0, 1], or NaN when one of the two classes is absent.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    is_positive = np.asarray(is_positive, dtype=bool).reshape(-1)
    if scores.shape != is_positive.shape:
        raise ValueError(f'{scores.shape[0]} scores for '
                         f'{is_positive.shape[0]} labels')
    num_pos = int(is_positive.sum())
    num_neg = is_positive.size - num_pos
    if num_pos == 0 or num_neg == 0:
        return float('nan')
    ranks = rankdata(scores)  # average ranks for ties, 1-based
    rank_sum = float(ranks[is_positive].sum())
    return (rank_sum - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg)


@METRICS.register_module()
class BinaryAUC(BaseMetric):
    """ROC AUC of one class against the rest, from the predicted scores.

    mmpretrain 1.2 has accuracy, precision/recall (``SingleLabelMetric``) and
    average precision, but no ROC AUC; this fills that gap for the patch
    classifier's ``nodule`` class. The result is reported in percent, like
    mmpretrain's ``Accuracy`` and ``SingleLabelMetric``, under
    ``roc/auc``.

    Args:
        pos_label (int | str): The positive class: its index in the predicted
            scores, or its name in ``dataset_meta['classes']``. Defaults to 1.
        collect_device (str): Device for collecting results across ranks,
            ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): Prefix of the metric name. Defaults to
            ``'roc'``.
    """
    default_prefix: Optional[str] = 'roc'

    def __init__(self,
                 pos_label: Union[int, str] = 1,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.pos_label = pos_label

    def _pos_index(self) -> int:
        if isinstance(self.pos_label, int):
            return self.pos_label
        classes = (self.dataset_meta or {}).get('classes')
        if not classes or self.pos_label not in classes:
            raise ValueError(f'pos_label={self.pos_label!r} is not one of the '
                             f'dataset classes {classes}')
        return list(classes).index(self.pos_label)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep the positive-class score and the ground truth of each sample.

        Args:
            data_batch: A batch from the dataloader (unused).
            data_samples (Sequence[dict]): Model outputs, each with
                ``pred_score`` (C, ) and ``gt_label`` (1, ).
        """
        pos = self._pos_index()
        for data_sample in data_samples:
            score = data_sample['pred_score']
            if pos >= score.numel():
                raise ValueError(f'pos_label index {pos} is out of range for '
                                 f'{score.numel()} class scores')
            self.results.append(
                (float(score[pos]), int(data_sample['gt_label'][0]) == pos))

    def compute_metrics(self, results: List[tuple]) -> dict:
        """Compute the AUC (percent) over all collected samples."""
        scores = np.array([r[0] for r in results], dtype=np.float64)
        is_positive = np.array([r[1] for r in results], dtype=bool)
        auc = binary_auc(scores, is_positive)
        if np.isnan(auc):
            MMLogger.get_current_instance().warning(
                f'ROC AUC is undefined: {int(is_positive.sum())} positive and '
                f'{int((~is_positive).sum())} negative samples')
        return {'auc': auc * 100.0}
