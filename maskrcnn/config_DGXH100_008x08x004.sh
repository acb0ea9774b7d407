# NVIDIA v3.0 Mask R-CNN config for 8x DGX H100 (mlcommons/training_results_v3.0,
# NVIDIA/benchmarks/maskrcnn/implementations/pytorch/config_DGXH100_multi_8x8x4.sh):
# 8 nodes x 8 GPUs x 4 images = global batch 256 (SOLVER.IMS_PER_BATCH 256).
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCHSIZE=4
export EVALBATCHSIZE=4
export BASE_LR=0.24
export WARMUP_ITERS=2300
export WARMUP_FACTOR=1.0434782608695652e-4  # mlperf_linear: 0.24 / 2300
export STEPS=6125,8000
# SOLVER_MAX_ITER 20000 iterations x 256 images = 43.7 epochs; NVIDIA evaluates at epoch ends only, so a run that
# does not converge gives up after the 43rd (NVIDIA/results/dgxh100_n8_ngc23.04_pytorch/maskrcnn/result_0.txt).
export NUMEPOCHS=43
export NUM_IMAGE_CANDIDATES=1000  # MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN
export CANDIDATES_PER_IMAGE=1     # MODEL.RPN.FPN_POST_NMS_TOP_N_PER_IMAGE True

## System run params
export DGXNNODES=8
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export SBATCH_NETWORK=sharp
export WALLTIME_MINUTES=30
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
