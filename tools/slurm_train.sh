#!/usr/bin/env bash
# Training on a Slurm cluster, one task per GPU (mmdet's slurm_train.sh).
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py options...]

Runs srun ... tools/train.py CONFIG --work-dir WORK_DIR --launcher slurm.

Environment (defaults in brackets):
  GPUS           total number of tasks (GPUs) [8]
  GPUS_PER_NODE  GPUs per node [8, or GPUS if fewer]
  CPUS_PER_TASK  CPU cores per task [5]
  SRUN_ARGS      extra srun arguments, e.g. "--quotatype=auto" [none]
  PYTHON         Python interpreter [python]

Example:
  GPUS=4 tools/slurm_train.sh gpu lung-staged configs/lung/mask_rcnn_r101_fpn_staged.py \
      work_dirs/mask_rcnn_r101_fpn_staged
USAGE
}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    usage
    exit 0
fi
if [[ $# -lt 4 ]]; then
    usage >&2
    echo "error: expected PARTITION, JOB_NAME, CONFIG and WORK_DIR, got $# argument(s): $*" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
shift 4

GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
PYTHON=${PYTHON:-python}
TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)

# SRUN_ARGS is split into words on purpose (several srun options in one variable)
# shellcheck disable=SC2086
PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$TOOLS_DIR/train.py" "$CONFIG" --work-dir="$WORK_DIR" --launcher=slurm "$@"
