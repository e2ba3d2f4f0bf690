#!/usr/bin/env bash
# Set up this project on a GPU machine WITHOUT a package registry, from files copied with
# the tree: the wheels and the mmcv 2.1.0 source archive that tools/gpu/download_wheels.sh
# fetched (where a registry is reachable) into .whl/gpu/.
#
#   bash tools/gpu/prepare.sh                      # -> .venv over the machine's torch
#   bash tools/gpu/prepare.sh --system             # into the machine's Python itself
#   bash tools/gpu/prepare.sh --venv DIR --wheels DIR --python /opt/py/bin/python3
#
# 1. Checks the machine's Python: its version matches the wheels' (MANIFEST.txt), its
#    torch + torchvision import and see a CUDA device, and an nvcc of the same CUDA major
#    version as torch's build is found (CUDA_HOME, PATH, /usr/local/cuda).
# 2. Creates the virtual environment with --system-site-packages, so the machine's CUDA
#    build of torch is used and never replaced. Where that Python is itself a virtual
#    environment (whose packages --system-site-packages would not see), a .pth file adds
#    its site-packages after the new environment's own.
# 3. Installs the project's requirements from the wheels only (pip --no-index
#    --find-links): what the machine already has at a fitting version is kept. Where the
#    machine already has an OpenCV package (e.g. opencv-python-headless), mmengine goes in
#    without the opencv-python its metadata names (two OpenCV packages share one cv2
#    folder), with its other requirements.
# 4. Builds mmcv 2.1.0 with CUDA ops for the local GPU only: TORCH_CUDA_ARCH_LIST from
#    torch.cuda.get_device_capability() (e.g. 9.0 on an H100/H200), MAX_JOBS = nproc.
#    The build log goes to work_dirs/gpu_prepare/mmcv_build.log. Skipped when an mmcv
#    2.1.0 whose ops pass step 5 is already installed.
# 5. Checks mmcv.ops on CUDA (tools/gpu/check_ops.py: nms and RoIAlign forward and
#    backward against torchvision), and that the project's registry imports without
#    SimpleITK (the CT reading is done where the data are prepared).
# Then: .venv/bin/python benchmarks/bench_gpu.py --help
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WHEELS=$ROOT/.whl/gpu
VENV=$ROOT/.venv
BASE_PYTHON=python3
USE_SYSTEM=0
ARCH=''
LOG_DIR=$ROOT/work_dirs/gpu_prepare

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
    cat <<'EOF'

Options:
  --wheels DIR    the folder made by download_wheels.sh (default: .whl/gpu)
  --venv DIR      the virtual environment to create or complete (default: .venv)
  --system        install into the machine's Python itself, no virtual environment
  --python PY     the machine's Python that holds torch (default: python3)
  --arch X.Y      CUDA architecture to build for (default: the local GPU's capability;
                  needed where the build runs without a GPU)
  -h, --help      this text
EOF
}

die() { printf '[prepare] ERROR: %s\n' "$*" >&2; exit 1; }
log() { printf '[prepare] %s\n' "$*"; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --wheels) [[ $# -ge 2 ]] || die "--wheels needs a folder"; WHEELS=$2; shift 2 ;;
        --venv) [[ $# -ge 2 ]] || die "--venv needs a folder"; VENV=$2; shift 2 ;;
        --system) USE_SYSTEM=1; shift ;;
        --python) [[ $# -ge 2 ]] || die "--python needs an executable"; BASE_PYTHON=$2; shift 2 ;;
        --arch) [[ $# -ge 2 ]] || die "--arch needs a value like 9.0"; ARCH=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[[ -z $ARCH || $ARCH =~ ^[0-9]+\.[0-9]+$ ]] || die "--arch '$ARCH' is not of the form X.Y (e.g. 9.0)"

# --- 1. the machine ---------------------------------------------------------------------
[[ -f $WHEELS/MANIFEST.txt ]] || die "no $WHEELS/MANIFEST.txt: run tools/gpu/download_wheels.sh where a package registry is reachable and copy .whl/gpu/ with the tree"
SDIST=$(ls "$WHEELS"/mmcv-2.1.0.tar.gz 2>/dev/null) || die "no mmcv-2.1.0.tar.gz in $WHEELS"
command -v "$BASE_PYTHON" >/dev/null || die "Python '$BASE_PYTHON' not found (--python)"
want_py=$(sed -n 's/.* for CPython \([0-9.]*\)$/\1/p' "$WHEELS/MANIFEST.txt" | head -1)
have_py=$("$BASE_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[[ $have_py == "$want_py" ]] || die "the wheels in $WHEELS are for CPython $want_py, $BASE_PYTHON is $have_py: fetch them with download_wheels.sh --python-version $have_py"

torch_info=$("$BASE_PYTHON" - <<'PY'
import torch, torchvision
cap = torch.cuda.get_device_capability(0) if torch.cuda.is_available() else None
print(torch.__version__, torchvision.__version__, torch.version.cuda or 'none',
      f'{cap[0]}.{cap[1]}' if cap else 'none')
PY
) || die "$BASE_PYTHON cannot import torch and torchvision (the machine's CUDA build is expected)"
read -r torch_version tv_version torch_cuda gpu_arch <<<"$torch_info"
[[ $torch_cuda != none ]] || die "torch $torch_version is not a CUDA build"
if [[ -z $ARCH ]]; then
    [[ $gpu_arch != none ]] || die "torch sees no GPU: pass --arch X.Y to build for a known one"
    ARCH=$gpu_arch
fi
log "torch $torch_version (CUDA $torch_cuda) + torchvision $tv_version; building for compute capability $ARCH"

NVCC=''
for c in ${CUDA_HOME:+"$CUDA_HOME/bin/nvcc"} "$(command -v nvcc || true)" /usr/local/cuda/bin/nvcc; do
    [[ -n $c && -x $c ]] && { NVCC=$c; break; }
done
[[ -n $NVCC ]] || die "no nvcc (CUDA compiler) found in CUDA_HOME, PATH or /usr/local/cuda"
nvcc_release=$("$NVCC" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
[[ ${nvcc_release%%.*} == "${torch_cuda%%.*}" ]] || die "nvcc $NVCC is CUDA $nvcc_release, torch was built with CUDA $torch_cuda: point CUDA_HOME at a CUDA ${torch_cuda%%.*} toolkit"
export CUDA_HOME=${CUDA_HOME:-$(cd "$(dirname "$NVCC")/.." && pwd)}
log "nvcc $NVCC (CUDA $nvcc_release), CUDA_HOME=$CUDA_HOME"

# --- 2. the environment -----------------------------------------------------------------
if [[ $USE_SYSTEM -eq 1 ]]; then
    PY=$BASE_PYTHON
else
    if [[ -e $VENV && ! -x $VENV/bin/python ]] || { [[ -x $VENV/bin/python ]] && ! "$VENV/bin/python" -c '' 2>/dev/null; }; then
        die "$VENV exists but its Python does not run (copied from another machine?): remove it or pass --venv"
    fi
    if [[ ! -x $VENV/bin/python ]]; then
        log "creating $VENV (--system-site-packages over $BASE_PYTHON)"
        "$BASE_PYTHON" -m venv --system-site-packages "$VENV"
        # A venv made from a venv sees the base interpreter's site-packages, not the
        # parent venv's, where the machine's torch may live: add those after ours.
        "$BASE_PYTHON" - "$VENV" <<'PY'
import site, sys, pathlib, subprocess
if sys.prefix != sys.base_prefix:
    own = subprocess.run([f'{sys.argv[1]}/bin/python', '-c',
                          'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                         check=True, capture_output=True, text=True).stdout.strip()
    pathlib.Path(own, '_machine_python.pth').write_text(
        ''.join(p + '\n' for p in site.getsitepackages()))
    print(f'[prepare] {own}/_machine_python.pth adds {", ".join(site.getsitepackages())}')
PY
    fi
    PY=$VENV/bin/python
fi
same_torch=$("$PY" -c 'import torch; print(torch.__file__)')
[[ $same_torch == $("$BASE_PYTHON" -c 'import torch; print(torch.__file__)') ]] \
    || die "$PY imports another torch ($same_torch) than $BASE_PYTHON"

# --- 3. the wheels ----------------------------------------------------------------------
PIP=("$PY" -m pip install --no-index --find-links "$WHEELS" --disable-pip-version-check
     --progress-bar off)
mapfile -t REQS < <(bash "$ROOT/tools/gpu/download_wheels.sh" --list | grep -v '^mmcv==')
if "$PY" -c 'import cv2' 2>/dev/null && ! "$PY" -m pip show -q opencv-python >/dev/null 2>&1; then
    log "an OpenCV package is installed already: mmengine without its opencv-python requirement"
    "${PIP[@]}" --no-deps 'mmengine==0.10.7'
    mapfile -t MMENGINE_DEPS < <("$PY" - <<'PY'
from importlib.metadata import requires
for r in requires('mmengine') or []:
    if 'extra ==' not in r and not r.lower().startswith('opencv'):
        print(r)
PY
)
    # mmengine itself leaves the list too: pip would otherwise resolve the installed
    # mmengine's own requirements again, opencv-python among them, and fail offline.
    filtered=()
    for r in "${REQS[@]}"; do [[ $r == opencv-python* || $r == mmengine* ]] || filtered+=("$r"); done
    REQS=("${filtered[@]}" "${MMENGINE_DEPS[@]}")
fi
log "installing from $WHEELS: ${REQS[*]}"
"${PIP[@]}" "${REQS[@]}"

# --- 4. mmcv with CUDA ops --------------------------------------------------------------
if "$PY" -c 'import mmcv, sys; sys.exit(mmcv.__version__ != "2.1.0")' 2>/dev/null \
        && "$PY" "$ROOT/tools/gpu/check_ops.py" --device cuda >/dev/null 2>&1; then
    log "mmcv 2.1.0 with working CUDA ops is already installed"
else
    mkdir -p "$LOG_DIR"
    log "building mmcv 2.1.0 for sm_${ARCH/./} with MAX_JOBS=$(nproc) (log: $LOG_DIR/mmcv_build.log)"
    start=$(date +%s)
    # --no-deps: mmcv's requirements are installed above; resolving them again would ask
    # for opencv-python where the machine has another OpenCV package.
    if ! MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=$ARCH MAX_JOBS=$(nproc) \
            "${PIP[@]}" --no-build-isolation --no-deps --no-cache-dir -v "$SDIST" >"$LOG_DIR/mmcv_build.log" 2>&1; then
        tail -n 40 "$LOG_DIR/mmcv_build.log" >&2
        die "the mmcv build failed (full log: $LOG_DIR/mmcv_build.log)"
    fi
    log "mmcv built in $(( $(date +%s) - start )) s"
fi

# --- 5. checks --------------------------------------------------------------------------
"$PY" "$ROOT/tools/gpu/check_ops.py" --device cuda
(cd "$ROOT" && "$PY" - <<'PY'
import sys
sys.modules['SimpleITK'] = None  # must not be needed on the GPU machine
import mmdet, mmengine, mmpretrain
import projects.lung_nodule.registry  # noqa: F401
print(f'[prepare] ready: mmdet {mmdet.__version__}, mmengine {mmengine.__version__}, '
      f'mmpretrain {mmpretrain.__version__}; the project registry imports without SimpleITK')
PY
)
log "next: $PY benchmarks/bench_gpu.py --help"
