# NVIDIA v3.0 RNN-T config for 64x DGX H100 (mlcommons/training_results_v3.0,
# NVIDIA/benchmarks/rnnt/implementations/pytorch/config_DGXH100_64x8x8x1.sh with hyperparameters_4096.sh):
# 64 nodes x 8 GPUs x 8 utterances = global batch 4096; 6 evaluation utterances per GPU (ceil(2703 / 512)).
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCHSIZE=8
export EVAL_BATCHSIZE=6
export LR=0.013
export EPOCH=100
export WARMUP=6
export HOLD_EPOCHS=33
export LR_DECAY_POWER=0.955
export EMA=0.995
export BETA1=0.833
export BETA2=0.98

## System run params
export DGXNNODES=64
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=7
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 10 ))
