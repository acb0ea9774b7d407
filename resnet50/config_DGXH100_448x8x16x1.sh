# NVIDIA v3.0 ResNet-50 config for 448x DGX H100 (mlcommons/training_results_v3.0, NVIDIA/benchmarks/resnet/implementations/mxnet/config_DGXH100_multi_448x8x16.sh):
# 448 nodes x 8 GPUs x 16 images x 1 = global batch 57344.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCHSIZE=16
export LR=23.0
export WARMUP_EPOCHS=32
export EVAL_OFFSET=0         # first eval after epoch 1, target epoch 77
export WD=2.5e-05
export MOM=0.95
export LARSETA=0.001
export LABELSMOOTHING=0.1
export NUMEPOCHS=78
export BN_GROUP=2          # BatchNorm statistics over 2 GPUs: model_bn_span 32 (NVIDIA's 448-node config)

## System run params
export DGXNNODES=448
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=7
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 25 ))
