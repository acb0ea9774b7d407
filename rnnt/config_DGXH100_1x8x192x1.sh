# NVIDIA v3.0 RNN-T config for 1x DGX H100 (mlcommons/training_results_v3.0,
# NVIDIA/benchmarks/rnnt/implementations/pytorch/config_DGXH100_1x8x192x1.sh with hyperparameters_1536.sh):
# 1 node x 8 GPUs x 192 utterances = global batch 1536.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCHSIZE=192
export EVAL_BATCHSIZE=338
export LR=0.0072
export EPOCH=80
export WARMUP=5
export HOLD_EPOCHS=26
export LR_DECAY_POWER=0.92
export EMA=0.995
export BETA1=0.9
export BETA2=0.999

## System run params
export DGXNNODES=1
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=25
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 10 ))
