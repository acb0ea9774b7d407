#!/bin/bash
# Download the wheels `make gpu-check` needs on the offline GPU machine (requirements-gpu-check.txt) for its
# Python 3.12, into DIR (default .whl, which git ignores through .git/info/exclude):
#   tools/gpu_wheels.sh [DIR]
# There, before the check:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site DIR/*.whl && export PYTHONPATH=/tmp/site
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir=${1:-.whl}
mkdir -p "${dir}"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64 any; do
    platforms+=(--platform "${p}")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "${dir}" -r requirements-gpu-check.txt
ls -l "${dir}"
du -sh "${dir}"
