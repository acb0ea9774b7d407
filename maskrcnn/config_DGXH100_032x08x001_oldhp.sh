# NVIDIA v3.0 Mask R-CNN config for 48x DGX H100 (mlcommons/training_results_v3.0,
# NVIDIA/benchmarks/maskrcnn/implementations/pytorch/config_DGXH100_oldhp_48x8x1.sh), training part:
# 32 nodes x 8 GPUs x 1 image = global batch 256 (SOLVER.IMS_PER_BATCH 256). NVIDIA ran it on 48 nodes, 16 of
# them (DEDICATED_EVALUATION_RANKS 128) only evaluating while the 32 trained on; this implementation has no
# dedicated evaluation ranks, so the 32 training nodes also evaluate and 32 nodes are asked for.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCHSIZE=1
export EVALBATCHSIZE=2
export BASE_LR=0.24
export WARMUP_ITERS=1800
export WARMUP_FACTOR=0.000133  # mlperf_linear: ~0.24 / 1800
export STEPS=5625,7500
# SOLVER_MAX_ITER 20000 iterations x 256 images = 43.7 epochs: the last evaluation after the 43rd.
export NUMEPOCHS=43
export NUM_IMAGE_CANDIDATES=1000  # MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN
export CANDIDATES_PER_IMAGE=1     # MODEL.RPN.FPN_POST_NMS_TOP_N_PER_IMAGE True

## System run params
export DGXNNODES=32
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export SBATCH_NETWORK=sharp
export WALLTIME_MINUTES=20
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
