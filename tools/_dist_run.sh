#!/usr/bin/env bash
# Shared by dist_train.sh and dist_test.sh: run tools/SCRIPT in NPROC processes per
# node with torchrun. Usage: tools/_dist_run.sh SCRIPT NPROC [SCRIPT arguments...]
# Environment: NNODES [1], NODE_RANK [0], MASTER_ADDR [127.0.0.1], PORT [29500],
# PYTHON [python].
set -euo pipefail

SCRIPT=$1
NPROC=$2
shift 2
if ! [[ "$NPROC" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: NPROC must be a positive number of processes per node, got '$NPROC'" >&2
    exit 2
fi

TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)
PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" \
    "$TOOLS_DIR/$SCRIPT" "$@"
