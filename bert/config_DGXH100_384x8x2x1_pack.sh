# NVIDIA v3.0 BERT config for 384x DGX H100 (mlcommons/training_results_v3.0,
# NVIDIA/benchmarks/bert/implementations/pytorch/config_DGXH100_384x8x2x1_pack_clipafter.sh):
# 384 nodes x 8 GPUs x 2 rows x packing 2 x 1 accumulation = global batch 12288 sequences.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCHSIZE=2
export PACKING_FACTOR=2
export GRADIENT_STEPS=1
export LR=0.0031
export MAX_SAMPLES_TERMINATION=12000000
export MAX_STEPS=500
export OPT_LAMB_BETA_1=0.8
export OPT_LAMB_BETA_2=0.925
export START_WARMUP_STEP=-100
export WARMUP_STEPS=300
export WEIGHT_DECAY_RATE=0.0166629
export EVAL_ITER_SAMPLES=275000
export SBATCH_NETWORK=sharp

## System run params
export DGXNNODES=384
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=4
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
