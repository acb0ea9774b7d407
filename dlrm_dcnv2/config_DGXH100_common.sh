# DGX H100 node: 8x H100-SXM5-80GB, 2 sockets (NVIDIA's v3.0 configs use these values).
export DGXNGPU=8
export DGXNSOCKET=2
export DGXSOCKETCORES=64
export DGXHT=2  # hyperthreading on

# NVIDIA's HugeCTR configs also set SCALER (fp16 loss scale), SHARDING_PLAN and
# MEM_COMM_BW_RATIO (HugeCTR's planner) and GEN_LOSS_SUMMARY: none applies here —
# the dense part runs in bf16 (no loss scale) and TorchRec's planner shards the tables.
export PRECISION=bf16  # NVIDIA: mixed precision (fp16 with a loss scale); bf16 needs none
export MODEL_SIZE=full
export DATA_FORMAT=numpy
