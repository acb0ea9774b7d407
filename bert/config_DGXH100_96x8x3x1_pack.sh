# NVIDIA v3.0 BERT config for 96x DGX H100 (mlcommons/training_results_v3.0,
# NVIDIA/benchmarks/bert/implementations/pytorch/config_DGXH100_96x8x3x1_pack_clipafter_set2.sh):
# 96 nodes x 8 GPUs x 3 rows x packing 2 x 1 accumulation = global batch 4608 sequences.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCHSIZE=3
export PACKING_FACTOR=2
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
export SBATCH_NETWORK=sharp

## System run params
export DGXNNODES=96
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=5
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
