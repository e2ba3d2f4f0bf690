#!/usr/bin/env bash
# One idempotent set-up step, used by both README commands and by .ci/run.
#
#   bash tools/setup_env.sh        # creates ./.venv (or $LUNG_VENV) and fills it
#
# 1. Creates the virtual environment if it is missing. Where the base Python already
#    has a working torch + torchvision pair (the GPU machines), the environment sees
#    it through --system-site-packages and it is never replaced.
# 2. Otherwise installs torch===2.13.0 + torchvision==0.28.0 from the registry. The
#    '===' excludes the local CPU-only 'torch 2.13.0+cpu' wheel that '==' would pick
#    and with which torchvision fails to import.
# 3. Builds mmcv 2.1.0 *with ops* from source against that torch (pip caches the
#    wheel, so a later environment on the same machine reuses it).
# 4. Installs the rest (requirements/runtime.txt, requirements/tests.txt).
# A stamp keyed on the requirements files and this script makes a second run
# near-instant when nothing changed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${LUNG_VENV:-$ROOT/.venv}
BASE_PYTHON=${PYTHON:-python3}
STAMP=$VENV/.lung_nodule_setup_stamp

log() { printf '[setup_env] %s\n' "$*"; }

torch_pair_works() {  # $1: a python executable
    "$1" - <<'PY' >/dev/null 2>&1
import torch
import torchvision
from torchvision.ops import nms
nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
PY
}

mmcv_ops_work() {
    "$1" - <<'PY' >/dev/null 2>&1
import mmcv
assert mmcv.__version__ == '2.1.0', mmcv.__version__
from mmcv.ops import RoIAlign, nms
PY
}

key=$(cat "$ROOT"/requirements.txt "$ROOT"/requirements/*.txt "$ROOT"/tools/setup_env.sh | sha256sum | cut -d' ' -f1)
if [[ -f $STAMP && $(cat "$STAMP") == "$key" ]]; then
    log "environment $VENV is up to date (stamp $key)"
    exit 0
fi

if [[ ! -x $VENV/bin/python ]]; then
    if torch_pair_works "$BASE_PYTHON"; then
        log "creating $VENV on top of the working torch of $BASE_PYTHON"
        "$BASE_PYTHON" -m venv --system-site-packages "$VENV"
    else
        log "creating $VENV"
        "$BASE_PYTHON" -m venv "$VENV"
    fi
fi
PY=$VENV/bin/python
PIP=("$PY" -m pip install --disable-pip-version-check --progress-bar off)

if torch_pair_works "$PY"; then
    log "keeping the installed $("$PY" -c 'import torch, torchvision; print("torch", torch.__version__, "+ torchvision", torchvision.__version__)')"
else
    log "installing torch===2.13.0 + torchvision==0.28.0 (about 1 minute, 4.8 GB)"
    "${PIP[@]}" 'torch===2.13.0' 'torchvision==0.28.0'
    torch_pair_works "$PY" || { log "ERROR: torch + torchvision do not import after installing them"; exit 1; }
fi

"${PIP[@]}" -r "$ROOT/requirements/build.txt"

if mmcv_ops_work "$PY"; then
    log "mmcv 2.1.0 with ops is already installed"
else
    log "building mmcv 2.1.0 with ops against torch (about 9 minutes on 2 cores; cached afterwards)"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "${PIP[@]}" --no-build-isolation 'mmcv==2.1.0'
    mmcv_ops_work "$PY" || { log "ERROR: mmcv.ops does not import after the build"; exit 1; }
fi

"${PIP[@]}" -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"

n_cv2=$("$PY" -m pip list --format=freeze 2>/dev/null | grep -ciE '^opencv-' || true)
if [[ $n_cv2 -ne 1 ]]; then
    log "ERROR: expected exactly one OpenCV package, found $n_cv2:"
    "$PY" -m pip list --format=freeze | grep -iE '^opencv-'
    exit 1
fi

"$PY" - <<'PY'
import mmcv, mmdet, mmengine, mmpretrain, torch, torchvision
from mmcv.ops import RoIAlign, nms
print(f'[setup_env] ready: torch {torch.__version__}, torchvision {torchvision.__version__}, '
      f'mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, '
      f'mmpretrain {mmpretrain.__version__}')
PY
echo "$key" >"$STAMP"
