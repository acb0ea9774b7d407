# DGX H100 node: 8x H100-SXM5-80GB, 2 sockets (NVIDIA's v3.0 configs use these values).
export DGXNGPU=8
export DGXNSOCKET=2
export DGXSOCKETCORES=64
export DGXHT=2  # hyperthreading on

# H100 fast paths: bf16 autocast, NHWC, DALI decoding on the GPU.
export PRECISION=bf16
export CHANNELS_LAST=1
export USE_DALI=1
export DATALOADER_WORKERS=6
