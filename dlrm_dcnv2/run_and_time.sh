#!/bin/bash
# One timed DLRM-DCNv2 run: torchrun on this node, or one process per srun task.
# Needs a sourced config_*.sh and DATADIR: the reference's day_{0..23} numpy files
# (DATA_FORMAT=numpy) or NVIDIA's train_data.bin/val_data.bin (DATA_FORMAT=binary).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ../common/run_and_time.sh
: "${DATADIR:?DATADIR is not set: the Criteo 1TB multi-hot data (day_*_{labels,dense}.npy, day_*_sparse_multi_hot.npz)}"
mlperf_run_and_time dlrm_dcnv2 dlrm_dcnv2.train --data-dir "${DATADIR}"
