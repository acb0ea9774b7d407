# NVIDIA v3.0 GPT-3 config for 96x DGX H100 (mlcommons/training_results_v3.0,
# NVIDIA/benchmarks/gpt3/implementations/pytorch/config_DGXH100_96x8x128x4x8_mbs1.sh):
# 96 nodes x 8 GPUs = 768 GPUs = TP 4 x PP 8 x DP 24; global batch 128 x 24 = 3072 sequences.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export MINIBS=128
export TENSOR_MODEL_PARALLEL=4
export PIPELINE_MODEL_PARALLEL=8

## System run params
export DGXNNODES=96
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=120
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
