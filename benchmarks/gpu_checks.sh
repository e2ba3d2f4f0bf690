#!/usr/bin/env bash
# The GPU figures of benchmarks/RESULTS.md ("GPU path"), from a bare GPU machine without
# a package registry, in as few calls as a short lease allows:
#
#   bash benchmarks/gpu_checks.sh OUT --part setup [--wheels DIR]   # then, on the same machine:
#   bash benchmarks/gpu_checks.sh OUT --part infer [--extra-wheels DIR]
#
# setup: tools/gpu/prepare.sh (the wheels, mmcv 2.1.0 built with CUDA ops for this GPU,
#        check_ops.py --device cuda), then benchmarks/bench_gpu.py: images/s and peak
#        memory of the R101 Mask R-CNN at 512x512, training and inference, fp32 and AMP.
# infer: benchmarks/bench_infer.py --device cuda --batch-size 8 on one synthetic
#        300x512x512 scan, with --amp and without: seconds per whole scan, by stage.
#        Needs SimpleITK in the environment (--extra-wheels installs the wheels of DIR).
#
# The parts are separate because a lease may carry too little at once for the wheels,
# mmcv's source and SimpleITK together. Logs and JSON land in OUT; the environment is
# .venv_gpu (or --venv), kept between the parts.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=''
PART=''
WHEELS=$ROOT/.whl/gpu
EXTRA=''
VENV=$ROOT/.venv_gpu

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
die() { printf '[gpu_checks] ERROR: %s\n' "$*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --part) [[ $# -ge 2 ]] || die "--part needs setup or infer"; PART=$2; shift 2 ;;
        --wheels) [[ $# -ge 2 ]] || die "--wheels needs a folder"; WHEELS=$2; shift 2 ;;
        --extra-wheels) [[ $# -ge 2 ]] || die "--extra-wheels needs a folder"; EXTRA=$2; shift 2 ;;
        --venv) [[ $# -ge 2 ]] || die "--venv needs a folder"; VENV=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
        *) [[ -z $OUT ]] || die "one OUT folder, got '$OUT' and '$1'"; OUT=$1; shift ;;
    esac
done
[[ -n $OUT ]] || die "name the OUT folder (see --help)"
[[ $PART == setup || $PART == infer ]] || die "--part setup or --part infer (see --help)"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
cd "$ROOT"

if [[ $PART == setup ]]; then
    { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
      echo "$(nproc) CPUs; $(date -u '+%Y-%m-%d %H:%M UTC')"; } | tee "$OUT/machine.txt"
    start=$(date +%s)
    status=0
    bash tools/gpu/prepare.sh --wheels "$WHEELS" --venv "$VENV" 2>&1 | tee "$OUT/prepare.log" \
        || status=$?
    echo "[gpu_checks] prepare.sh: exit $status after $(( $(date +%s) - start )) s" | tee -a "$OUT/prepare.log"
    [[ -f work_dirs/gpu_prepare/mmcv_build.log ]] && gzip -c work_dirs/gpu_prepare/mmcv_build.log >"$OUT/mmcv_build.log.gz"
    [[ $status -eq 0 ]] || exit "$status"
    "$VENV/bin/python" benchmarks/bench_gpu.py --out "$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench_gpu.log"
else
    [[ -x $VENV/bin/python ]] || die "no $VENV: run --part setup first on this machine"
    if [[ -n $EXTRA ]]; then
        "$VENV/bin/python" -m pip install -q --no-index --no-deps "$EXTRA"/*.whl
    fi
    "$VENV/bin/python" -c 'import SimpleITK' 2>/dev/null \
        || die "SimpleITK is not installed in $VENV: pass --extra-wheels with its wheel"
    for amp in --amp ''; do
        name=bench_infer${amp:+_amp}
        "$VENV/bin/python" benchmarks/bench_infer.py --out work_dirs/bench_infer_gpu \
            --device cuda --batch-size 8 $amp 2>&1 | tee "$OUT/$name.log"
        cp work_dirs/bench_infer_gpu/bench_infer.json "$OUT/$name.json"
    done
fi
