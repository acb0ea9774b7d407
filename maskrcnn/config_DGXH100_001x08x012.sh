# NVIDIA v3.0 Mask R-CNN config for 1x DGX H100 (mlcommons/training_results_v3.0,
# NVIDIA/benchmarks/maskrcnn/implementations/pytorch/config_DGXH100.sh, its EXTRA_CONFIG solver settings):
# 1 node x 8 GPUs x 12 images = global batch 96 (SOLVER.IMS_PER_BATCH 96).
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCHSIZE=12
export EVALBATCHSIZE=12
export BASE_LR=0.12
export WARMUP_ITERS=625
export WARMUP_FACTOR=0.000192  # mlperf_linear: 0.12 / 625, the LR rises from 0
export STEPS=12000,16000
# SOLVER_MAX_ITER 40000 iterations x 96 images = 32.7 epochs of the 117,266 training images; NVIDIA evaluates at
# epoch ends only, so a run that does not converge gives up after the 32nd (NVIDIA/results/dgxh100_ngc23.04_pytorch/
# maskrcnn/result_2.txt: 32 evaluations, aborted).
export NUMEPOCHS=32
export NUM_IMAGE_CANDIDATES=12000  # MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN, over each GPU's batch of 12
export CANDIDATES_PER_IMAGE=0      # MODEL.RPN.FPN_POST_NMS_TOP_N_PER_IMAGE False

## System run params
export DGXNNODES=1
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=45
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
