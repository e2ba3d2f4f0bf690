#!/usr/bin/env bash
# Fetch, where a package registry is reachable, everything a GPU machine WITHOUT one needs
# to run this project: the pure-Python (and manylinux) wheels for CPython 3.12 and the
# mmcv 2.1.0 source archive, which tools/gpu/prepare.sh builds there with CUDA ops.
#
#   bash tools/gpu/download_wheels.sh                 # -> .whl/gpu/ (git-ignored)
#   bash tools/gpu/download_wheels.sh --out DIR --skip scipy --skip matplotlib
#   bash tools/gpu/download_wheels.sh --list          # print the requirements, fetch nothing
#
# What is fetched: requirements/runtime.txt and the build tools of requirements/build.txt
# (one source of truth: a requirement added there travels too), with their whole
# dependency closure, as binary wheels for CPython 3.12 on manylinux x86-64, plus the mmcv
# sdist. What is NOT fetched: torch, torchvision, triton and nvidia-* (the GPU machine has
# its own CUDA build, which must not be replaced) and SimpleITK (about 50 MB; nothing that
# runs on the GPU machine imports it: the CT data are prepared here and copied).
# `--skip NAME` leaves out more distributions the target machine already has (for
# example a machine image that ships numpy, scipy and matplotlib), to make the folder
# smaller; prepare.sh then takes them from the machine.
# The folder ends with MANIFEST.txt: the requirements, the skipped names, the files.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=$ROOT/.whl/gpu
PYTHON=${PYTHON:-python3}
PY_VERSION=3.12
LIST_ONLY=0
# Always left out: provided by the GPU machine's torch install, or never used there.
SKIP=(torch torchvision triton SimpleITK)
MMCV_SDIST_REQ='mmcv==2.1.0'

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
    cat <<EOF

Options:
  --out DIR      folder to fill (default: .whl/gpu under the repository root)
  --skip NAME    a distribution the GPU machine already has (repeatable); always skipped:
                 ${SKIP[*]} and nvidia-*
  --python-version X.Y
                 the GPU machine's CPython (default: $PY_VERSION)
  --list         print the requirements that would be fetched, one a line, and exit
  -h, --help     this text
Environment: PYTHON (the pip to use, default python3).
EOF
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --out) [[ $# -ge 2 ]] || { echo "error: --out needs a folder" >&2; exit 2; }
               OUT=$2; shift 2 ;;
        --skip) [[ $# -ge 2 ]] || { echo "error: --skip needs a distribution name" >&2; exit 2; }
                SKIP+=("$2"); shift 2 ;;
        --python-version)
            [[ $# -ge 2 && $2 =~ ^3\.[0-9]+$ ]] || { echo "error: --python-version needs X.Y, e.g. 3.12" >&2; exit 2; }
            PY_VERSION=$2; shift 2 ;;
        --list) LIST_ONLY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

# PEP 503 normalisation, so 'scikit_image', 'Scikit-Image' and 'scikit-image' match.
normalise() { tr '[:upper:]' '[:lower:]' <<<"$1" | sed -E 's/[-_.]+/-/g'; }

is_skipped() {  # $1: a distribution name
    local name s
    name=$(normalise "$1")
    [[ $name == nvidia-* ]] && return 0
    for s in "${SKIP[@]}"; do
        [[ $name == "$(normalise "$s")" ]] && return 0
    done
    return 1
}

# Requirement lines of a requirements file: comments, blanks and -r includes dropped.
requirement_lines() {
    sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$1" | grep -v -e '^$' -e '^-' || true
}

REQS=()
while IFS= read -r line; do
    name=$(sed -E 's/[[:space:]]*([<>=!~;[].*)?$//' <<<"$line")
    is_skipped "$name" || REQS+=("$line")
done < <(requirement_lines "$ROOT/requirements/build.txt"; requirement_lines "$ROOT/requirements/runtime.txt")

if [[ $LIST_ONLY -eq 1 ]]; then
    printf '%s\n' "${REQS[@]}" "$MMCV_SDIST_REQ"
    exit 0
fi

mkdir -p "$OUT"
PLATFORMS=()
for p in manylinux1_x86_64 manylinux2010_x86_64 manylinux2014_x86_64 manylinux_2_17_x86_64 \
         manylinux_2_24_x86_64 manylinux_2_26_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64 \
         manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64 manylinux_2_39_x86_64; do
    PLATFORMS+=(--platform "$p")
done

echo "[download_wheels] wheels for CPython $PY_VERSION -> $OUT"
"$PYTHON" -m pip download --disable-pip-version-check --progress-bar off \
    --only-binary=:all: --python-version "$PY_VERSION" --implementation cp --abi "cp${PY_VERSION/./}" \
    --abi abi3 --abi none "${PLATFORMS[@]}" -d "$OUT" "${REQS[@]}"

# The source archive. pip still runs its setup.py for the metadata, in a build environment
# without torch (so no ops are configured; MMCV_WITH_OPS must not be 0, which renames the
# project mmcv-lite), where setuptools<81 keeps the pkg_resources that setup.py imports
# (PIP_CONSTRAINT reaches that environment too).
echo "[download_wheels] mmcv source archive -> $OUT"
constraint=$(mktemp)
trap 'rm -f "$constraint"' EXIT
echo 'setuptools<81' >"$constraint"
MMCV_WITH_OPS=1 PIP_CONSTRAINT=$constraint "$PYTHON" -m pip download --disable-pip-version-check --progress-bar off \
    --no-deps --no-binary=:all: -d "$OUT" "$MMCV_SDIST_REQ"

# pip's resolver cannot leave out a dependency: drop what the GPU machine provides.
removed=()
for f in "$OUT"/*.whl; do
    dist=$(basename "$f" | cut -d- -f1)
    if is_skipped "$dist"; then
        rm -f "$f"
        removed+=("$(basename "$f")")
    fi
done

{
    echo "# Made by tools/gpu/download_wheels.sh on $(date -u +%Y-%m-%dT%H:%MZ) for CPython $PY_VERSION"
    echo "# requirements:"
    printf '#   %s\n' "${REQS[@]}" "$MMCV_SDIST_REQ (source)"
    echo "# skipped (the GPU machine provides them): ${SKIP[*]} nvidia-*"
    for f in "${removed[@]}"; do echo "# removed after resolving: $f"; done
    (cd "$OUT" && ls -1 -- *.whl *.tar.gz 2>/dev/null)
} >"$OUT/MANIFEST.txt.tmp"
mv "$OUT/MANIFEST.txt.tmp" "$OUT/MANIFEST.txt"

n=$(ls -1 "$OUT"/*.whl | wc -l)
echo "[download_wheels] $n wheels + $(ls -1 "$OUT"/mmcv-*.tar.gz | wc -l) sdist, $(du -sh "$OUT" | cut -f1) in $OUT"
