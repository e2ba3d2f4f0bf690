"""Save the ground truth of a split, after its pipeline, as PNGs.

mmdet's ``tools/analysis_tools/browse_dataset.py`` for our configs: every sample
goes through the split's pipeline (for ``train``: rotation, translation and
``BoxesFromMasks``), and its ``gt_instances`` (box, mask, one colour per nodule
with the config's visualizer) are drawn on the image it produced. The file name
is the image's own; with ``--repeat N`` each training sample is drawn N times
(``<name>_<k>.png``) to show the augmentation.

Example::

    python tools/browse_dataset.py configs/lung/mask_rcnn_r101_fpn_staged.py \
        --output-dir work_dirs/browse --max-images 20 --repeat 3
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

import _bootstrap  # noqa: F401  (puts the repo on sys.path, registers our modules)
import numpy as np
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from mmengine.utils import mkdir_or_exist

from mmdet.registry import DATASETS, VISUALIZERS


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Draw the ground truth of a split after its pipeline and save PNGs')
    parser.add_argument('config', help='config file')
    parser.add_argument('--output-dir', required=True, help='folder for the PNGs')
    parser.add_argument('--split', choices=('train', 'val', 'test'), default='train',
                        help='whose dataloader dataset and pipeline (default: train)')
    parser.add_argument('--max-images', type=int, help='draw at most this many samples')
    parser.add_argument('--repeat', type=int, default=1,
                        help='draw each sample this many times (default: 1)')
    parser.add_argument('--seed', type=int, default=0,
                        help='numpy seed of the random augmentation (default: 0)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value pairs')
    return parser.parse_args(argv)


def browse(cfg: Config, output_dir: str, split: str = 'train',
           max_images: Optional[int] = None, repeat: int = 1, seed: int = 0) -> List[str]:
    """Draw the pipeline's ground truth of ``split`` and save it under ``output_dir``.

    Args:
        cfg (Config): A detection config with ``<split>_dataloader`` and
            ``visualizer``.
        output_dir (str): Folder for the PNGs.
        split (str): ``train``, ``val`` or ``test``.
        max_images (int, optional): Samples to draw at most.
        repeat (int): Draws per sample (different augmentations).
        seed (int): numpy seed (mmdet's random transforms draw from numpy).

    Returns:
        list[str]: The files written.
    """
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    dataset = DATASETS.build(cfg[f'{split}_dataloader'].dataset)
    # out_file writes the PNGs: no vis backend (it would want a save_dir)
    visualizer = VISUALIZERS.build(
        {**cfg.visualizer, 'vis_backends': None, 'name': f'browse_dataset:{output_dir}'})
    visualizer.dataset_meta = dataset.metainfo
    mkdir_or_exist(output_dir)
    np.random.seed(seed)
    written = []
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    for index in range(count):
        for k in range(repeat):
            item = dataset[index]
            sample = item['data_samples']
            image = item['inputs'].permute(1, 2, 0).numpy()[..., ::-1]  # BGR -> RGB
            stem = osp.splitext(osp.basename(sample.img_path))[0]
            out_file = osp.join(output_dir, f'{stem}_{k}.png' if repeat > 1 else f'{stem}.png')
            visualizer.add_datasample(
                stem, np.ascontiguousarray(image), data_sample=sample, draw_pred=False,
                show=False, out_file=out_file)
            written.append(out_file)
    return written


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    written = browse(cfg, args.output_dir, args.split, args.max_images, args.repeat,
                     args.seed)
    print(f'{len(written)} images written to {args.output_dir}')
    return 0 if written else 1


if __name__ == '__main__':
    sys.exit(main())
