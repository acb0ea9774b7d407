# NVIDIA v3.0 DLRM-DCNv2 config for 8x DGX H100 (mlcommons/training_results_v3.0,
# NVIDIA/benchmarks/dlrm_dcnv2/implementations/hugectr/config_DGXH100_8x8x2112.sh):
# 8 nodes x 8 GPUs x 2112 rows = global batch 135168; BATCHSIZE is the global batch, as there.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCHSIZE=135168
export BATCHSIZE_EVAL=1048576
export LEARNING_RATE=0.0034

## System run params
export DGXNNODES=8
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=10
export WALLTIME=$(( 5 + ${NEXP:-1} * WALLTIME_MINUTES ))

## network flags (NVIDIA also sets NCCL_COLLNET_ENABLE=1; NCCL reads it from the environment, not from here)
export SBATCH_NETWORK=sharp
