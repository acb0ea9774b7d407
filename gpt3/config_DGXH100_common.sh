# DGX H100 node: 8x H100-SXM5-80GB, 2 sockets (NVIDIA's v3.0 configs use these values).
export DGXNGPU=8
export DGXNSOCKET=2
export DGXSOCKETCORES=64
export DGXHT=2  # hyperthreading on

# NVIDIA's v3.0 GPT-3 settings shared by every shape (config_common.sh): one layer per
# virtual pipeline stage (96 layers / PP 8 / 12), micro-batch 1, bf16 (NVIDIA: FP8 hybrid).
export INTERLEAVED_PIPELINE=12
export MICRO_BATCH_SIZE=1
export PRECISION=bf16
