# The training part of NVIDIA's v3.0 9-node 3D U-Net config (mlcommons/training_results_v3.0,
# NVIDIA/benchmarks/unet3d/implementations/mxnet/config_DGXH100_9x8x1.sh): NVIDIA ran 2 of the 9 nodes
# as dedicated evaluation ranks (--nodes_for_eval 2) and trained on 7 x 8 GPUs x 1 patch = global batch 56
# (logged global_batch_size 56). This implementation evaluates on the training ranks, so the same
# hyperparameters run on 7 nodes; 168 cases / 56 = 3 steps per epoch.
# NVIDIA's 54-node config (12 evaluation nodes, 42 training nodes in spatial groups of 4: global batch 84)
# needs spatial parallelism, which this implementation does not have: 84 patches cannot be split
# evenly over whole 8-GPU nodes.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCH_SIZE=1
export VAL_BATCH_SIZE=7
export LR=2.0
export LR_WARMUP_EPOCHS=1000
export START_EVAL_AT=1000

## System run params
export DGXNNODES=7
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=6
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 10 ))
