"""Measure every nodule of a label volume in world mm (centre, axes, volume) into a table.

LABELS is any 3D label volume SimpleITK reads (``.nii.gz``, ``.nii``, ``.mhd``,
``.nrrd``): 0 = background, each positive value one nodule (its ``nodule_id``), e.g. a
radiologist's segmentation, the synthetic data's ``labels/<seriesuid>.nii.gz`` or the
``nodules.nii.gz`` of whole-scan inference, so that reference and predicted sizes are
measured by the same code (``projects.lung_nodule.ct.measure``). The columns are those of
``nodules.csv``; ``probability`` is left empty (a label volume has none).

Examples::

    python tools/measure_nodules.py labels/1.3.6.1.4.nii.gz
    python tools/measure_nodules.py seg.nrrd --out seg_nodules.csv --json seg_nodules.json
"""
import argparse
import sys
from pathlib import Path
from typing import Sequence

# Light on purpose: only the torch-free CT package, not tools/_bootstrap.py (which
# registers the OpenMMLab modules and so imports torch).
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from projects.lung_nodule.ct import (ScanReadError, measure_label_volume,  # noqa: E402
                                     nodule_table_csv, read_label_volume, write_nodule_table)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     epilog=__doc__.split('\n\n', 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('labels', type=Path, metavar='LABELS', help='label volume')
    parser.add_argument('--out', type=Path, help='CSV to write (atomically); default: print '
                                                 'the table to stdout')
    parser.add_argument('--json', type=Path,
                        help='also write the rows as JSON (atomically); needs --out')
    args = parser.parse_args(argv)
    if args.json is not None and args.out is None:
        parser.error('--json needs --out')
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        labels, geometry = read_label_volume(args.labels)
    except ScanReadError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    rows = [m.as_row(None) for m in measure_label_volume(labels, geometry)]
    if args.out is None:
        sys.stdout.write(nodule_table_csv(rows))
        return 0
    write_nodule_table(rows, args.out, args.json)
    print(f'{len(rows)} nodules of {args.labels} -> {args.out}'
          + (f', {args.json}' if args.json else ''), file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
