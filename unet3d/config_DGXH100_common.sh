# DGX H100 node: 8x H100-SXM5-80GB, 2 sockets (NVIDIA's v3.0 configs use these values).
export DGXNGPU=8
export DGXNSOCKET=2
export DGXSOCKETCORES=64
export DGXHT=2  # hyperthreading on

# H100 fast path: bf16 autocast. NVIDIA's MXNet run used fp16 with static loss scaling, NDHWC layouts, DALI
# and CUDA graphs; this implementation decodes nothing (volumes are .npy) and crops on the CPU workers.
export PRECISION=bf16
export DATALOADER_WORKERS=4
export OPTIMIZER=nag
export MAX_EPOCHS=10000
export EVALUATE_EVERY=20
