# NVIDIA v3.0 DLRM-DCNv2 config for 1x DGX H100 (mlcommons/training_results_v3.0,
# NVIDIA/benchmarks/dlrm_dcnv2/implementations/hugectr/config_DGXH100_1x8x6912.sh):
# 1 nodes x 8 GPUs x 6912 rows = global batch 55296; BATCHSIZE is the global batch, as there.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCHSIZE=55296
export BATCHSIZE_EVAL=262144
export LEARNING_RATE=0.004

## System run params
export DGXNNODES=1
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=15
export WALLTIME=$(( 5 + ${NEXP:-1} * WALLTIME_MINUTES ))
