# NVIDIA v3.0 BERT config for 1x DGX H100 (mlcommons/training_results_v3.0,
# NVIDIA/benchmarks/bert/implementations/pytorch/config_DGXH100_1x8x48x1_pack.sh):
# 1 nodes x 8 GPUs x 48 rows x packing 2 x 1 accumulation = global batch 768 sequences.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCHSIZE=48
export PACKING_FACTOR=2
export GRADIENT_STEPS=1
export LR=0.00096
export MAX_SAMPLES_TERMINATION=4500000
export MAX_STEPS=3680
export OPT_LAMB_BETA_1=0.60466
export OPT_LAMB_BETA_2=0.85437
export START_WARMUP_STEP=0
export WARMUP_STEPS=0           # 0: WARMUP_PROPORTION * MAX_STEPS
export WEIGHT_DECAY_RATE=0.1
export EVAL_ITER_SAMPLES=150000
export WARMUP_PROPORTION=0.0   # NVIDIA: no warmup at this batch

## System run params
export DGXNNODES=1
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=8
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
