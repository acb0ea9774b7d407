#!/bin/bash
# One timed ResNet-50 run: torchrun on this node, or one process per srun task.
# Needs a sourced config_*.sh and DATADIR (ImageNet root with train/ and val/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ../common/run_and_time.sh
: "${DATADIR:?DATADIR is not set: the ImageNet root with train/ and val/}"
mlperf_run_and_time resnet resnet50.train --data-dir "${DATADIR}"
