# NVIDIA v3.0 3D U-Net config for 1x DGX H100 (mlcommons/training_results_v3.0,
# NVIDIA/benchmarks/unet3d/implementations/mxnet/config_DGXH100_1x8x7.sh):
# 1 node x 8 GPUs x 7 patches = global batch 56; 168 cases / 56 = 3 steps per epoch.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCH_SIZE=7
export VAL_BATCH_SIZE=4
export LR=2.0
export LR_WARMUP_EPOCHS=1000
export START_EVAL_AT=1000

## System run params
export DGXNNODES=1
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=20
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 10 ))
