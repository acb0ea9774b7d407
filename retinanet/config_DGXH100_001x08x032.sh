# NVIDIA v3.0 RetinaNet (ssd) config for 1x DGX H100 (mlcommons/training_results_v3.0,
# NVIDIA/benchmarks/ssd/implementations/pytorch/config_DGXH100_001x08x032.sh):
# 1 nodes x 8 GPUs x 32 images = global batch 256.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCHSIZE=32
export NUMEPOCHS=8
export LR=0.000085
export WARMUP_EPOCHS=0

## System run params
export DGXNNODES=1
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=60
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
