# DGX H100 node: 8x H100-SXM5-80GB, 2 sockets (NVIDIA's v3.0 configs use these values).
export DGXNGPU=8
export DGXNSOCKET=2
export DGXSOCKETCORES=64
export DGXHT=2  # hyperthreading on

# H100 fast path: bf16 autocast (NVIDIA's run used fp16 with NHWC, CUDA graphs and its own fused kernels;
# this implementation runs torchvision's Mask R-CNN). JPEGs decode with PIL in DataLoader workers, masks are
# rasterised by pycocotools there; the model resizes and pads on the GPU.
export PRECISION=bf16
export DATALOADER_WORKERS=8
# Fast path: faster-coco-eval's C++ COCOeval instead of pycocotools' (the same AP on the tests' cases,
# tests/maskrcnn/test_evaluate.py); COCO_EVAL=pycocotools is the reference's.
export COCO_EVAL=faster
