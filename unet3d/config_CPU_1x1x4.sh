# CPU dry run of the same code on the synthetic dataset (make smoke BENCH=unet3d):
# 1 node x 1 process x 4 patches of 16^3; the debug model (filters 8-32, three stages) on volumes of 16-19 voxels
# a side. 168 training cases / 4 = 42 steps per epoch, the first epoch the LR warmup; sliding-window evaluation
# of the 42 validation volumes (one window each: VAL_BATCH_SIZE 1 pads none) from epoch START_EVAL_AT, every
# EVALUATE_EVERY epochs. The loader runs in the training process: cropping a 16^3 patch is cheaper than a worker.

## DL params
export MODEL_SIZE=debug
export OPTIMIZER=nag
export BATCH_SIZE=4
export VAL_BATCH_SIZE=1
export LR=1.0
export LR_WARMUP_EPOCHS=1
export MAX_EPOCHS=10
export START_EVAL_AT=2
export EVALUATE_EVERY=1
export INPUT_SHAPE=16
export DATALOADER_WORKERS=0
export DEVICE=cpu

## System run params
export DGXNNODES=1
export DGXNGPU=1
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=15
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
