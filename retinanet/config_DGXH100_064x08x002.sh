# NVIDIA v3.0 RetinaNet (ssd) config for 64x DGX H100 (mlcommons/training_results_v3.0,
# NVIDIA/benchmarks/ssd/implementations/pytorch/config_DGXH100_064x08x002.sh):
# 64 nodes x 8 GPUs x 2 images = global batch 1024.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCHSIZE=2
export NUMEPOCHS=10
export LR=0.0001
export WARMUP_EPOCHS=1

## System run params
export DGXNNODES=64
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export SBATCH_NETWORK=sharp
export WALLTIME_MINUTES=20
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
