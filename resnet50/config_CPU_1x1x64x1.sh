# CPU dry run of the same code on the synthetic ImageNet-layout dataset
# (make smoke): 1 node x 1 process x 64 images x 1 accumulation step, 32 px crops.
# 320 train images / 64 = 5 steps per epoch; evals at epochs 4, 8, ..., 24;
# the synthetic target is usually reached at epoch 12-16 (60-80 steps, ~1-2 min).

## DL params
export BATCHSIZE=64
export LR=6.0
export WARMUP_EPOCHS=2
export NUMEPOCHS=24
export EVAL_OFFSET=3         # rules: eval every 4 epochs, first-eval offset 0-3
export WD=5.0e-05            # 1e-4 * 2^-1
export MOM=0.9
export LARSETA=0.001
export LABELSMOOTHING=0.1
export IMAGE_SIZE=32
export CHANNELS_LAST=1       # faster on CPU too (oneDNN)
export DATALOADER_WORKERS=1
export DEVICE=cpu

## System run params
export DGXNNODES=1
export DGXNGPU=1
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=10
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
