# DGX H100 node: 8x H100-SXM5-80GB, 2 sockets (NVIDIA's v3.0 configs use these values).
export DGXNGPU=8
export DGXNSOCKET=2
export DGXSOCKETCORES=64
export DGXHT=2  # hyperthreading on

# H100 fast path: bf16 autocast. NVIDIA's run used DALI on the GPU, apex's transducer joint and loss, fused
# LAMB, fp16 and CUDA graphs for evaluation; this implementation computes the front end on the GPU in PyTorch
# and reads WAVs in DATALOADER_WORKERS.
export PRECISION=bf16
export DATALOADER_WORKERS=8
export WEIGHTS_INIT_SCALE=0.5
export BUCKET=1
export GRAD_ACCUMULATION_STEPS=1
