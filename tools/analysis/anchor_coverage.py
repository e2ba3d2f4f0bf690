"""How many ground-truth boxes get a positive anchor under the config's RPN assigner.

Nodules of 3-30 mm are about 4-43 px at 0.7 mm/px; with mmdet's default anchors
(scale 8 on strides 4..64: 32 px at the smallest) and ``min_pos_iou=0.3`` a box
under about 17x17 px gets no positive anchor and the RPN never learns to propose
it. This tool runs the *training* pipeline on the annotations of a split (so boxes
are in the resized image, as the RPN sees them in training; mmdet's test
pipelines load annotations after ``Resize`` and keep them in the original frame),
less its random geometric augmentation (``--keep-augmentation`` keeps it), lays
out the RPN anchors for each padded image exactly as the RPN does, runs the RPN
assigner of ``model.train_cfg.rpn`` and reports the fraction of boxes that at
least one anchor is assigned to.

Example::

    python tools/analysis/anchor_coverage.py configs/lung/mask_rcnn_r101_fpn_staged.py
    python tools/analysis/anchor_coverage.py CONFIG --min-coverage 0.99 \
        --cfg-options model.rpn_head.anchor_generator.scales=[8]
"""
import argparse
import copy
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/, for _bootstrap
import _bootstrap  # noqa: E402,F401  (repo on sys.path, our modules registered)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

from mmdet.registry import DATASETS, TASK_UTILS  # noqa: E402

from projects.lung_nodule.datasets import image_dataset  # noqa: E402


@dataclass
class Coverage:
    """Boxes (w, h in pixels after the pipeline) and whether each got an anchor."""
    sizes: List[tuple] = field(default_factory=list)
    covered: List[bool] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return float(np.mean(self.covered)) if self.covered else float('nan')


#: Random geometric transforms left out of the pipeline unless asked for.
RANDOM_GEOMETRY = ('Rotate', 'TranslateX', 'TranslateY', 'RandomAffine', 'RandomFlip',
                   'RandomCrop', 'RandomResize')


#: Transforms that take a second image from a dataset wrapper (MultiImageMixDataset).
MIXING = ('CopyPaste', 'Mosaic', 'MixUp', 'CachedMosaic', 'CachedMixUp')


def anchor_coverage(cfg: Config, split: str = 'train',
                    max_images: Optional[int] = None,
                    keep_augmentation: bool = False) -> Coverage:
    """Run the RPN assigner of ``cfg`` on the ground truth of ``split``.

    Args:
        cfg (Config): A two-stage detector config with ``model.rpn_head`` and
            ``model.train_cfg.rpn.assigner``.
        split (str): ``train``, ``val`` or ``test``: whose ``*_dataloader.dataset``.
        max_images (int, optional): Stop after this many images.
        keep_augmentation (bool): Keep the random geometric transforms
            (``RANDOM_GEOMETRY``) of the training pipeline. Defaults to False.

    Returns:
        Coverage: Per box, its size and whether an anchor is assigned to it.
    """
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    if 'rpn_head' not in cfg.model or 'rpn' not in cfg.model.get('train_cfg', {}):
        raise ValueError('anchor coverage needs model.rpn_head and model.train_cfg.rpn; '
                         f'the config has model keys {sorted(cfg.model)}')
    dataset_cfg, _ = image_dataset(copy.deepcopy(cfg[f'{split}_dataloader'].dataset))
    _, train_pipeline = image_dataset(copy.deepcopy(cfg.train_dataloader.dataset))
    dataset_cfg.pipeline = [
        t for t in train_pipeline
        if (keep_augmentation or t['type'] not in RANDOM_GEOMETRY) and t['type'] not in MIXING
    ]
    dataset_cfg.test_mode = False
    dataset = DATASETS.build(dataset_cfg)
    generator = TASK_UTILS.build(cfg.model.rpn_head.anchor_generator)
    assigner = TASK_UTILS.build(cfg.model.train_cfg.rpn.assigner)
    border = cfg.model.train_cfg.rpn.get('allowed_border', -1)
    divisor = cfg.model.data_preprocessor.get('pad_size_divisor', 1)

    result = Coverage()
    for index in range(len(dataset) if max_images is None else min(max_images, len(dataset))):
        sample = dataset[index]['data_samples']
        boxes = sample.gt_instances.bboxes
        boxes = boxes.tensor if hasattr(boxes, 'tensor') else torch.as_tensor(boxes)
        if len(boxes) == 0:
            continue
        h, w = sample.img_shape
        padded = (math.ceil(h / divisor) * divisor, math.ceil(w / divisor) * divisor)
        sizes = [(math.ceil(padded[0] / s[1]), math.ceil(padded[1] / s[0]))
                 for s in generator.strides]
        anchors = torch.cat(generator.grid_priors(sizes, device='cpu'))
        if border >= 0:  # the RPN drops anchors crossing the image border by more
            inside = ((anchors[:, 0] >= -border) & (anchors[:, 1] >= -border)
                      & (anchors[:, 2] < w + border) & (anchors[:, 3] < h + border))
            anchors = anchors[inside]
        assigned = assigner.assign(
            InstanceData(priors=anchors),
            InstanceData(bboxes=boxes, labels=torch.zeros(len(boxes), dtype=torch.long)))
        hit = set(assigned.gt_inds[assigned.gt_inds > 0].tolist())
        for j, box in enumerate(boxes.tolist()):
            result.sizes.append((box[2] - box[0], box[3] - box[1]))
            result.covered.append(j + 1 in hit)
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Fraction of ground-truth boxes that get a positive anchor under the '
        "config's RPN assigner")
    parser.add_argument('config', help='detector config file')
    parser.add_argument('--split', choices=('train', 'val', 'test'), default='train',
                        help="whose annotations to read, through the training pipeline "
                        '(default: train)')
    parser.add_argument('--keep-augmentation', action='store_true',
                        help='keep the random geometric transforms of the training pipeline')
    parser.add_argument('--max-images', type=int, help='read at most this many images')
    parser.add_argument('--min-coverage', type=float,
                        help='exit with status 1 when the coverage is below this fraction')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value pairs')
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    result = anchor_coverage(cfg, args.split, args.max_images, args.keep_augmentation)
    if not result.covered:
        print(f'error: no ground-truth box in the {args.split} split of {args.config}',
              file=sys.stderr)
        return 2
    gen, rpn = cfg.model.rpn_head.anchor_generator, cfg.model.train_cfg.rpn.assigner
    sides = np.sqrt(np.prod(np.array(result.sizes), axis=1))
    print(f'anchors: scales {list(gen.scales)} ratios {list(gen.ratios)} strides '
          f'{list(gen.strides)}; assigner {rpn.type} pos_iou_thr {rpn.pos_iou_thr} '
          f'min_pos_iou {rpn.get("min_pos_iou")} match_low_quality '
          f'{rpn.get("match_low_quality")}')
    print(f'boxes: {len(sides)} in the {args.split} split, sqrt(w*h) from {sides.min():.1f} '
          f'to {sides.max():.1f} px (median {np.median(sides):.1f})')
    missed = sorted(s for s, ok in zip(sides, result.covered) if not ok)
    print(f'anchor coverage: {100 * result.fraction:.2f}% ({len(sides) - len(missed)} of '
          f'{len(sides)} boxes get a positive anchor)')
    if missed:
        print('boxes without one, sqrt(w*h) px: ' + ', '.join(f'{s:.1f}' for s in missed[:20])
              + (' ...' if len(missed) > 20 else ''))
    if args.min_coverage is not None and result.fraction < args.min_coverage:
        print(f'error: coverage {result.fraction:.4f} is below --min-coverage '
              f'{args.min_coverage}; add smaller anchor scales '
              '(model.rpn_head.anchor_generator.scales) or lower '
              'model.train_cfg.rpn.assigner.min_pos_iou', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
