# NVIDIA+CoreWeave v3.0 ResNet-50 config for 448x CoreWeave HGX H100 (mlcommons/training_results_v3.0,
# NVIDIA_CoreWeave/benchmarks/resnet/implementations/mxnet/config_DGXH100_multi_448x8x16.sh): the same
# hyperparameters as NVIDIA's 448-node DGX H100 run, on Xeon Platinum 8462Y+ hosts.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_448x8x16x1.sh"
export DGXSOCKETCORES=32
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
