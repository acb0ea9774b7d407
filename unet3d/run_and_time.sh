#!/bin/bash
# One timed 3D U-Net run: torchrun on this node, or one process per srun task.
# Needs a sourced config_*.sh and DATADIR (the preprocessed KiTS19 cases, case_XXXXX_{x,y}.npy).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ../common/run_and_time.sh
: "${DATADIR:?DATADIR is not set: the preprocessed KiTS19 folder (case_XXXXX_x.npy, case_XXXXX_y.npy)}"
mlperf_run_and_time unet3d unet3d.train --data-dir "${DATADIR}"
