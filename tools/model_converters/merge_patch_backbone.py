"""Put a patch classifier's backbone into a Mask R-CNN checkpoint.

``Runner.train()`` initialises the model (``init_cfg``) *before* it loads
``load_from``, so a Mask R-CNN config cannot take its backbone from the patch
classifier through ``init_cfg`` and the rest from COCO weights through
``load_from``: the COCO backbone would overwrite the patch one. This tool
makes the one checkpoint that does both: the detector's weights (FPN, RPN,
RoI heads: COCO-pretrained) with every ``backbone.*`` tensor replaced by the
classifier's. The two backbones must have the same module names and shapes
(mmpretrain's and mmdet's ``ResNet`` of the same depth do).

Example::

    python tools/model_converters/merge_patch_backbone.py \\
        mask_rcnn_r101_fpn_1x_coco_20200204-1efe0ed5.pth \\
        work_dirs/compare_backbones/resnet101_1xb64_lung-patch \\
        work_dirs/patch_backbone/mask_rcnn_r101_fpn_coco_patch-r101.pth

The classifier may be a checkpoint file or a work dir (its
``last_checkpoint`` is used). Then train with
``configs/lung/mask_rcnn_r101_fpn_staged_patch-backbone.py``, whose
``load_from`` is that output.
"""
import argparse
import datetime
import os
import os.path as osp
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import projects.lung_nodule.registry  # noqa: E402,F401  (registers our modules, checkpoint loader)

__all__ = ['merge_patch_backbone', 'resolve_checkpoint']

PREFIX = 'backbone.'


def resolve_checkpoint(path: str) -> str:
    """A checkpoint file, or the ``last_checkpoint`` of an mmengine work dir.

    Raises:
        FileNotFoundError: if ``path`` is neither, naming what is missing.
    """
    if osp.isfile(path):
        return path
    pointer = osp.join(path, 'last_checkpoint')
    if osp.isdir(path):
        if not osp.isfile(pointer):
            raise FileNotFoundError(
                f'{path} is a directory without a last_checkpoint file')
        with open(pointer) as f:
            target = f.read().strip()
        if not osp.isfile(target):  # saved relative to another cwd
            target = osp.join(path, osp.basename(target))
        if not osp.isfile(target):
            raise FileNotFoundError(
                f'{pointer} names {target}, which does not exist')
        return target
    raise FileNotFoundError(f'checkpoint {path} does not exist')


def _state_dict(filename: str) -> Dict:
    from mmengine.runner import CheckpointLoader

    checkpoint = CheckpointLoader.load_checkpoint(
        filename, map_location='cpu')
    state_dict = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state_dict, dict) or not state_dict:
        raise ValueError(f'{filename} holds no state dict')
    return {(k[len('module.'):] if k.startswith('module.') else k): v
            for k, v in state_dict.items()}


def merge_patch_backbone(detector: str,
                         classifier: str,
                         out: str,
                         prefix: str = PREFIX) -> Dict[str, int]:
    """Write ``detector``'s weights with ``classifier``'s backbone to ``out``.

    Args:
        detector (str): Mask R-CNN checkpoint (file or URL).
        classifier (str): Patch classifier checkpoint, or its work dir.
        out (str): Output checkpoint path (written atomically).
        prefix (str): Key prefix of the backbone in both state dicts.

    Returns:
        dict: ``replaced`` (tensors), ``replaced_params`` (elements) and
        ``kept`` (non-backbone tensors of the detector).

    Raises:
        KeyError: if the two backbones do not have the same tensor names.
        ValueError: if a tensor's shape differs, or a state dict is empty.
    """
    import torch

    classifier = resolve_checkpoint(classifier)
    det = _state_dict(detector)
    cls = _state_dict(classifier)
    det_keys = {k for k in det if k.startswith(prefix)}
    cls_keys = {k for k in cls if k.startswith(prefix)}
    if not det_keys or det_keys != cls_keys:
        missing = sorted(det_keys - cls_keys)
        extra = sorted(cls_keys - det_keys)
        raise KeyError(
            f'the backbones of {detector} and {classifier} differ: '
            f'{len(missing)} {prefix}* tensors only in the detector '
            f'{missing[:5]}, {len(extra)} only in the classifier {extra[:5]}')
    bad_shapes = [(k, tuple(det[k].shape), tuple(cls[k].shape))
                  for k in sorted(det_keys) if det[k].shape != cls[k].shape]
    if bad_shapes:
        raise ValueError(f'{len(bad_shapes)} backbone tensors differ in shape '
                         f'(name, detector, classifier): {bad_shapes[:5]}')

    merged = {k: (cls[k] if k in det_keys else v) for k, v in det.items()}
    checkpoint = dict(
        state_dict=merged,
        meta=dict(
            merged_by='tools/model_converters/merge_patch_backbone.py',
            detector=str(detector),
            backbone_from=str(classifier),
            backbone_prefix=prefix,
            time=datetime.datetime.now().isoformat(timespec='seconds')))
    out_dir = osp.dirname(osp.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = f'{out}.tmp{os.getpid()}'
    try:
        torch.save(checkpoint, tmp)
        os.replace(tmp, out)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return dict(
        replaced=len(det_keys),
        replaced_params=int(sum(cls[k].numel() for k in det_keys)),
        kept=len(det) - len(det_keys))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Replace the backbone of a Mask R-CNN checkpoint with '
        'the backbone of a patch classifier (same architecture).')
    parser.add_argument('detector', help='Mask R-CNN checkpoint (file/URL)')
    parser.add_argument(
        'classifier', help='patch classifier checkpoint, or its work dir')
    parser.add_argument('out', help='output checkpoint')
    parser.add_argument(
        '--prefix', default=PREFIX,
        help='key prefix of the backbone in both checkpoints')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        stats = merge_patch_backbone(args.detector, args.classifier, args.out,
                                     args.prefix)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f'merge_patch_backbone: {exc}', file=sys.stderr)
        return 1
    print(f"{args.out}: {stats['replaced']} backbone tensors "
          f"({stats['replaced_params'] / 1e6:.2f} M values) from "
          f"{args.classifier}, {stats['kept']} other tensors from "
          f'{args.detector}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
