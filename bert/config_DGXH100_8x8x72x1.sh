# NVIDIA v3.0 BERT config for 8x DGX H100 (mlcommons/training_results_v3.0,
# NVIDIA/benchmarks/bert/implementations/pytorch/config_DGXH100_8x8x72x1.sh):
# 8 nodes x 8 GPUs x 72 rows x packing 1 x 1 accumulation = global batch 4608 sequences.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCHSIZE=72
export PACKING_FACTOR=1
export GRADIENT_STEPS=1
export LR=0.00258
export MAX_SAMPLES_TERMINATION=4500000
export MAX_STEPS=700
export OPT_LAMB_BETA_1=0.6
export OPT_LAMB_BETA_2=0.7
export START_WARMUP_STEP=-200000
export WARMUP_STEPS=200330
export WEIGHT_DECAY_RATE=0.1
export EVAL_ITER_SAMPLES=200000

## System run params
export DGXNNODES=8
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=4
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
