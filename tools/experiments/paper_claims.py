"""The paper's two claims, tested on the demo's synthetic data and model size (issue 14).

1. **staged vs all layers**: the staged fine-tune (heads -> ResNet layer2-4 -> all, at the
   demo's one rate) against training every layer at once, both from the same
   patch-pretrained ResNet-18 backbone (the analogue of the paper's COCO start), same data,
   steps and learning-rate schedule apart from the staging;
2. **patch-pretrained vs random backbone**, both with the staged schedule.

Three arms (``staged_patch`` is shared by both comparisons) x ``--seeds`` training seeds.
Each run: tools/train.py (validation curves), tools/test.py --eval segm (COCO segm AP50 /
AP, Matterport mAP@0.5, nodule Dice), tools/infer_scan.py + tools/eval_luna16.py on the
test scans (CPM), false positives per test slice. The data and the patch classifier are
made once. The results section ``paper-claims`` of benchmarks/RESULTS.md (mean, SD, each
seed; every run's directory; command, machine, date) and the validation curves plot
(benchmarks/figures/paper-claims_val_curves.png) are rewritten after every run.

Resumable: run the same command again; finished steps and runs are skipped (see
tools/experiments/_runner.py). Cost on 2 idle CPU cores (measured 2026-11-30,
benchmarks/RESULTS.md): ~2 min shared (data + patch classifier), then ~14 min per run at
900 steps (~10.5 training, ~1 validation, ~3 test, inference and FROC): 9 runs ~ 2 h;
more when other jobs share the cores.

Example::

    python tools/experiments/paper_claims.py                  # 3 arms x 3 seeds x 900 steps
    python tools/experiments/paper_claims.py --seeds 2 --iters 300 --note "shortened: ..."
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _runner import Arm, Experiment, add_arguments, finish_arguments  # noqa: E402

MARKER = 'paper-claims'
ARMS = (
    Arm('staged_patch', 'staged heads -> 3+ -> all, backbone from the patch classifier '
        '(the paper\'s method; the demo)'),
    Arm('all_patch', 'every layer from the first step, same backbone, data and rate',
        config='configs/lung/experiments/mask_rcnn_r18_fpn_all_demo.py', own_stages=True),
    Arm('staged_random', 'staged schedule, backbone randomly initialised',
        config='configs/lung/experiments/mask_rcnn_r18_fpn_staged_random-backbone_demo.py',
        patch_backbone=False),
)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0] + ' Staged vs all layers, patch-pretrained vs '
        'random backbone, N seeds each; table and curves into benchmarks/RESULTS.md.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(parser, seeds=3, iters=900, marker=MARKER)
    parser.add_argument('--arms', nargs='+', choices=[a.name for a in ARMS],
                        default=[a.name for a in ARMS], help='arms to run (all three: both '
                        'claims; staged_patch is the reference of each)')
    argv = list(sys.argv[1:] if argv is None else argv)
    args = finish_arguments(parser.parse_args(argv))
    arms = [a for a in ARMS if a.name in args.arms]
    Experiment(args, arms, MARKER, 'Paper claims: staged vs all layers, patch-pretrained vs '
               'random backbone', argv).run_all()


if __name__ == '__main__':
    main()
