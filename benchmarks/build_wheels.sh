#!/usr/bin/env bash
# The wheel folder a GPU machine without network installs dsan from
# (benchmarks/gpu_pipeline.sh; the device tool carries it: carry ["wheels"]):
#
#     [PY_VERSION=3.12] [WHEELS=wheels] [PYTHON=python3] bash benchmarks/build_wheels.sh
#
# What goes in: dsan's own wheel and every runtime dependency that the GPU image lacks,
# with their whole dependency closure (prefect, prefect-dask, dask[distributed],
# SimpleITK, pydicom, pydantic, typer, rich, PyYAML, psutil), as manylinux x86_64
# wheels for CPython PY_VERSION (3.12: the GPU image's python3 is 3.12.3, at
# /opt/torch/.venv, read in its sessions' output, .library/device/KINDS.md). What stays
# out: torch (a CUDA build is GBs; the image has 2.11.0+cu130) and the scientific stack
# the image already holds, which dsan needs only at its lower bounds: numpy, pandas,
# pyarrow, scipy, scikit-learn, matplotlib. No dev or test extras.
#
# Size: the device tool carries at most 64 MiB with the working tree (~2 MiB). These
# wheels are ~97 MiB as downloaded, SimpleITK alone 50 MiB (one 260 MiB extension, not
# stripped of anything strip could remove). So the folder holds ONE file,
# wheels.tar.xz: the same wheels re-stored uncompressed (ZIP_STORED: still valid
# wheels, RECORD unchanged) and the tar compressed with xz -9, which packs
# SimpleITK's library into ~27 MiB where the wheel's deflate took 50. gpu_pipeline.sh
# unpacks it to a temp folder and runs `pip install --no-index --find-links` there.
# Versions are the ones the CPU test suite runs with (pip freeze of .venv, 2026-12-05).
set -euo pipefail
cd "$(dirname "$0")/.."
PY_VERSION=${PY_VERSION:-3.12}
WHEELS=${WHEELS:-wheels}
PYTHON=${PYTHON:-python3}
LIMIT_MIB=${LIMIT_MIB:-60}
REQUIREMENTS=(
    "prefect==3.9.1" "prefect-dask==0.3.7" "dask[distributed]==2026.8.0"
    "SimpleITK==2.5.7" "pydicom==3.0.2" "pydantic==2.14.4" "typer==0.29.2"
    "rich==15.0.0" "PyYAML==6.0.4" "psutil==7.2.2"
)
abi="cp${PY_VERSION/./}"
platforms=()
for tag in manylinux1_x86_64 manylinux2010_x86_64 manylinux2014_x86_64 \
           manylinux_2_5_x86_64 manylinux_2_12_x86_64 manylinux_2_17_x86_64 \
           manylinux_2_24_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64 \
           manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64; do
    platforms+=(--platform "$tag")
done

# pip's output without the warnings this development box's pip configuration prints
# (local index folders it lacks); pip's exit status is kept (pipefail).
quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/download" "$scratch/stored/wheels"

echo "== dsan's wheel"
quiet "$PYTHON" -m pip wheel -q --no-deps -w "$scratch/download" .

echo "== dependencies for CPython $PY_VERSION ($abi), manylinux x86_64"
quiet "$PYTHON" -m pip download -q --only-binary=:all: --python-version "$PY_VERSION" \
    --implementation cp --abi "$abi" --abi abi3 --abi none "${platforms[@]}" \
    -d "$scratch/download" "${REQUIREMENTS[@]}"

echo "== re-storing uncompressed, then xz"
"$PYTHON" - "$scratch/download" "$scratch/stored/wheels" <<'EOF'
import sys
import zipfile
from pathlib import Path

source, destination = Path(sys.argv[1]), Path(sys.argv[2])
for wheel in sorted(source.glob("*.whl")):
    with zipfile.ZipFile(wheel) as old, \
            zipfile.ZipFile(destination / wheel.name, "w", zipfile.ZIP_STORED) as new:
        for info in old.infolist():
            data = old.read(info)
            info.compress_type = zipfile.ZIP_STORED
            new.writestr(info, data)
EOF
ls "$scratch/stored/wheels" > "$scratch/stored/wheels/MANIFEST.txt"
mkdir -p "$WHEELS"
rm -f "$WHEELS"/*.whl "$WHEELS/wheels.tar.xz"
tar -C "$scratch/stored" -cf - wheels | xz -9 -T2 > "$WHEELS/wheels.tar.xz"
cp "$scratch/stored/wheels/MANIFEST.txt" "$WHEELS/MANIFEST.txt"

count=$(ls "$scratch/download" | wc -l)
downloaded=$(du -sm "$scratch/download" | cut -f1)
packed=$(du -sm "$WHEELS" | cut -f1)
echo "$count wheels, $downloaded MiB as downloaded; $WHEELS/ is $packed MiB:"
du -b "$WHEELS"/*
if [ "$packed" -gt "$LIMIT_MIB" ]; then
    echo "error: $WHEELS/ is $packed MiB, over the $LIMIT_MIB MiB the device tool can carry" >&2
    exit 1
fi
