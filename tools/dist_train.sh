#!/usr/bin/env bash
# Distributed training with torchrun, one process per device (mmdet's dist_train.sh).
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tools/dist_train.sh CONFIG NPROC [tools/train.py options...]

Runs tools/train.py CONFIG --launcher pytorch in NPROC processes per node (torchrun).
On a machine without CUDA the processes use the gloo backend on the CPU.

Environment (defaults in brackets):
  NNODES       number of nodes [1]
  NODE_RANK    rank of this node [0]
  MASTER_ADDR  address of node 0 [127.0.0.1]
  PORT         rendezvous port on node 0 [29500]
  PYTHON       Python interpreter [python]

Example:
  tools/dist_train.sh configs/lung/mask_rcnn_r101_fpn_staged.py 4
  NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 tools/dist_train.sh CONFIG 8 --auto-scale-lr
USAGE
}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    usage
    exit 0
fi
if [[ $# -lt 2 ]]; then
    usage >&2
    echo "error: expected CONFIG and NPROC, got $# argument(s): $*" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2

exec bash "$(dirname "$0")/_dist_run.sh" train.py "$NPROC" "$CONFIG" --launcher pytorch "$@"
