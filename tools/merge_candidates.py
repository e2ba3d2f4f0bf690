"""Join the shards of a sharded whole-scan inference run into one run's files.

``tools/infer_scan.py --shard K/N`` writes ``OUT/candidates.K-of-N.csv`` and
``OUT/summary.K-of-N.json``; once all N shards have finished, this writes
``OUT/candidates.csv`` (LUNA16 submission format, the same file one unsharded run
writes) and ``OUT/summary.json``. It refuses when a shard's files are missing.

Example::

    python tools/merge_candidates.py work_dirs/infer
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ''):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from projects.lung_nodule.apis.cohort import merge_shards  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out', type=Path, help='the --out folder of the shards')
    args = parser.parse_args(argv)
    try:
        path, count = merge_shards(args.out)
    except (FileNotFoundError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    print(f'{path}: {count} candidates; {args.out / "summary.json"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
