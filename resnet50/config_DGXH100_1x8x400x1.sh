# NVIDIA v3.0 ResNet-50 config for 1x DGX H100 (mlcommons/training_results_v3.0, NVIDIA/benchmarks/resnet/implementations/mxnet/config_DGXH100.sh):
# 1 nodes x 8 GPUs x 400 images x 1 = global batch 3200.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCHSIZE=400
export LR=11.0
export WARMUP_EPOCHS=2
export EVAL_OFFSET=2         # first eval after epoch 3, target epoch 35
export WD=5.0e-05
export MOM=0.9
export LARSETA=0.001
export LABELSMOOTHING=0.1
export NUMEPOCHS=37

## System run params
export DGXNNODES=1
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=20
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
