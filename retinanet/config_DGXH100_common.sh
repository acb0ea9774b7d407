# DGX H100 node: 8x H100-SXM5-80GB, 2 sockets (NVIDIA's v3.0 configs use these values).
export DGXNGPU=8
export DGXNSOCKET=2
export DGXSOCKETCORES=64
export DGXHT=2  # hyperthreading on

# H100 fast path: bf16 autocast. NVIDIA's run decoded and resized with DALI on the GPU and matched anchors
# there; this implementation decodes JPEGs with PIL in DataLoader workers and resizes on the GPU.
export PRECISION=bf16
export DATALOADER_WORKERS=12
# Fast path: faster-coco-eval's C++ COCOeval instead of pycocotools' (the same AP on the tests' cases,
# tests/maskrcnn/test_evaluate.py); COCO_EVAL=pycocotools is the reference's.
export COCO_EVAL=faster
