# NVIDIA v3.0 ResNet-50 config for 64x DGX H100 (mlcommons/training_results_v3.0, NVIDIA/benchmarks/resnet/implementations/mxnet/config_DGXH100_multi_64x8x40.sh):
# 64 nodes x 8 GPUs x 40 images x 1 = global batch 20480.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCHSIZE=40
export LR=22.0
export WARMUP_EPOCHS=12
export EVAL_OFFSET=1         # first eval after epoch 2, target epoch 50
export WD=2.5e-05
export MOM=0.9
export LARSETA=0.001
export LABELSMOOTHING=0.1
export NUMEPOCHS=52

## System run params
export DGXNNODES=64
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=5
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
