#!/usr/bin/env bash
# Distributed testing with torchrun, one process per device (mmdet's dist_test.sh).
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tools/dist_test.sh CONFIG CHECKPOINT NPROC [tools/test.py options...]

Runs tools/test.py CONFIG CHECKPOINT --launcher pytorch in NPROC processes per node
(torchrun). On a machine without CUDA the processes use the gloo backend on the CPU.

Environment (defaults in brackets):
  NNODES       number of nodes [1]
  NODE_RANK    rank of this node [0]
  MASTER_ADDR  address of node 0 [127.0.0.1]
  PORT         rendezvous port on node 0 [29500]
  PYTHON       Python interpreter [python]

Example:
  tools/dist_test.sh configs/lung/mask_rcnn_r101_fpn_staged.py \
      work_dirs/mask_rcnn_r101_fpn_staged/epoch_24.pth 4 --eval bbox segm
USAGE
}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    usage
    exit 0
fi
if [[ $# -lt 3 ]]; then
    usage >&2
    echo "error: expected CONFIG, CHECKPOINT and NPROC, got $# argument(s): $*" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3

exec bash "$(dirname "$0")/_dist_run.sh" test.py "$NPROC" "$CONFIG" "$CHECKPOINT" \
    --launcher pytorch "$@"
