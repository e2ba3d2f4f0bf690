#!/usr/bin/env bash
# Whole-scan inference over many scans with torchrun, one process per device: each
# rank runs its own shard (--shard RANK/WORLD_SIZE), then the shards are merged.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tools/dist_infer.sh CONFIG CHECKPOINT NPROC INPUT... --out DIR [tools/infer_scan.py options...]

Runs tools/infer_scan.py in NPROC processes per node (torchrun); rank R of W takes every
W-th scan from R and writes DIR/candidates.R-of-W.csv. With one node the shards are then
merged into DIR/candidates.csv and DIR/summary.json (tools/merge_candidates.py); with
several nodes run that once all of them have finished. --device cuda gives each rank
cuda:LOCAL_RANK.

Environment (defaults in brackets):
  NNODES       number of nodes [1]
  NODE_RANK    rank of this node [0]
  MASTER_ADDR  address of node 0 [127.0.0.1]
  PORT         rendezvous port on node 0 [29500]
  PYTHON       Python interpreter [python]

Example:
  tools/dist_infer.sh configs/lung/mask_rcnn_r101_fpn_all.py epoch_24.pth 4 \
      data/luna16 --splits data/coco/splits.csv --split test --out work_dirs/infer --device cuda
USAGE
}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    usage
    exit 0
fi
if [[ $# -lt 4 ]]; then
    usage >&2
    echo "error: expected CONFIG CHECKPOINT NPROC INPUT..., got $# argument(s): $*" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3

OUT=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    if [[ "${args[$i]}" == "--out" && $((i + 1)) -lt ${#args[@]} ]]; then
        OUT=${args[$((i + 1))]}
    elif [[ "${args[$i]}" == --out=* ]]; then
        OUT=${args[$i]#--out=}
    fi
done
if [[ -z "$OUT" ]]; then
    echo "error: --out DIR is required" >&2
    exit 2
fi

TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)
bash "$TOOLS_DIR/_dist_run.sh" infer_scan.py "$NPROC" "$CONFIG" "$CHECKPOINT" "$@"
if [[ "${NNODES:-1}" == "1" ]]; then
    "${PYTHON:-python}" "$TOOLS_DIR/merge_candidates.py" "$OUT"
fi
