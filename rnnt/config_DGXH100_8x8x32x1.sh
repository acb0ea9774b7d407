# NVIDIA v3.0 RNN-T config for 8x DGX H100 (mlcommons/training_results_v3.0,
# NVIDIA/benchmarks/rnnt/implementations/pytorch/config_DGXH100_8x8x32x1.sh with hyperparameters_2048.sh):
# 8 nodes x 8 GPUs x 32 utterances = global batch 2048.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCHSIZE=32
export EVAL_BATCHSIZE=43
export LR=0.007
export EPOCH=80
export WARMUP=6
export HOLD_EPOCHS=33
export LR_DECAY_POWER=0.939
export EMA=0.995
export BETA1=0.9
export BETA2=0.999

## System run params
export DGXNNODES=8
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=10
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 10 ))
