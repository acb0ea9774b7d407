# NVIDIA v3.0 ResNet-50 config for 96x DGX H100 (mlcommons/training_results_v3.0, NVIDIA/benchmarks/resnet/implementations/mxnet/config_DGXH100_multi_96x8x42.sh):
# 96 nodes x 8 GPUs x 42 images x 1 = global batch 32256.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_common.sh"

## DL params
export BATCHSIZE=42
export LR=21.2
export WARMUP_EPOCHS=16
export EVAL_OFFSET=3         # first eval after epoch 4, target epoch 56
export WD=2.5e-05
export MOM=0.95
export LARSETA=0.001
export LABELSMOOTHING=0.1
export NUMEPOCHS=58

## System run params
export DGXNNODES=96
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=8
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 10 ))
