# NVIDIA+CoreWeave v3.0 BERT config for 384x CoreWeave HGX H100 (mlcommons/training_results_v3.0,
# NVIDIA_CoreWeave/benchmarks/bert/implementations/pytorch/config_DGXH100_384x8x2x1_pack_clipafter.sh,
# identical to NVIDIA's file; result coreweave_hgxh100_n384): the same hyperparameters as the
# 384-node DGX H100 run, on Xeon Platinum 8462Y+ hosts.
source "$(dirname "${BASH_SOURCE[0]}")/config_DGXH100_384x8x2x1_pack.sh"
export DGXSOCKETCORES=32
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
