# DGX H100 node: 8x H100-SXM5-80GB, 2 sockets (NVIDIA's v3.0 configs use these values).
export DGXNGPU=8
export DGXNSOCKET=2
export DGXSOCKETCORES=64
export DGXHT=2  # hyperthreading on

# H100 fast paths. NVIDIA's runs used FP8 (Transformer Engine) with apex FusedLAMB;
# bf16 autocast + apex FusedLAMB is the default here, PRECISION=fp8 switches TE on.
export PRECISION=bf16
export FUSED_LAMB=1
export DATALOADER_WORKERS=2
export EVAL_BATCHSIZE=16
