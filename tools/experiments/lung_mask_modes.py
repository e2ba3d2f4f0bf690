"""Lung-mask modes compared: ``blank`` vs ``filter`` (issue 10, acceptance 3).

``blank`` (the paper) exports slices whose pixels outside the lung mask are 0; ``filter``
exports the whole windowed slice and uses the lung mask only to choose slices and keep
detections during whole-scan inference. Both arms: the same synthetic scans, split, patch
classifier backbone, staged schedule, steps and training seeds; only the COCO export
(``luna16_to_coco.py --lung-mask-mode``) and the config's ``lung_mask_mode`` differ.

Figures per run (tools/experiments/_runner.py): COCO segm AP50 / AP, Matterport mAP@0.5 and
nodule Dice from tools/test.py, false positives per test slice from its dumped
predictions (score >= 0.5, unmatched at mask IoU 0.5), and CPM from whole-scan inference
(there ``filter`` drops detections outside the lung; tools/test.py does not, so on test
slices ``filter`` also counts detections that whole-scan inference would drop).
The section ``lung-mask-modes`` of benchmarks/RESULTS.md is rewritten after every run.

Cost on 2 idle CPU cores: ~9 min shared (data, two COCO exports, patch classifier), then
~9-10 min per run at 600 steps.

Example::

    python tools/experiments/lung_mask_modes.py --seeds 1
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _runner import Arm, Experiment, add_arguments, finish_arguments  # noqa: E402

MARKER = 'lung-mask-modes'
ARMS = (
    Arm('blank', 'slices exported with pixels outside the lung set to 0 (the paper)',
        lung_mask_mode='blank'),
    Arm('filter', 'whole slices exported; lung mask chooses slices and keeps detections',
        lung_mask_mode='filter'),
)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description='Lung-mask modes blank vs filter: same data, seeds, steps and staged '
        'schedule; table and curves into benchmarks/RESULTS.md.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(parser, seeds=1, iters=600, marker=MARKER)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = finish_arguments(parser.parse_args(argv))
    Experiment(args, ARMS, MARKER, 'Lung-mask modes: blank vs filter', argv).run_all()


if __name__ == '__main__':
    main()
