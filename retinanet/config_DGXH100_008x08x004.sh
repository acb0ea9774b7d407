# NVIDIA v3.0 RetinaNet (ssd) config for 8x DGX H100 (mlcommons/training_results_v3.0,
# NVIDIA/benchmarks/ssd/implementations/pytorch/config_DGXH100_008x08x004.sh):
# 8 nodes x 8 GPUs x 4 images = global batch 256.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCHSIZE=4
export NUMEPOCHS=6
export LR=0.0001
export WARMUP_EPOCHS=1

## System run params
export DGXNNODES=8
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export SBATCH_NETWORK=sharp
export WALLTIME_MINUTES=30
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
