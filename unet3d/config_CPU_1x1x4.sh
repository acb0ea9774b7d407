# CPU dry run of the same code on the synthetic dataset (make smoke BENCH=unet3d):
# 1 node x 1 process x 4 patches of 32^3; the debug model (filters 8-64, four stages) on volumes of 32-48 voxels
# a side. 168 training cases / 4 = 42 steps per epoch; sliding-window evaluation of the 42 validation
# volumes from epoch START_EVAL_AT, every EVALUATE_EVERY epochs.

## DL params
export MODEL_SIZE=debug
export OPTIMIZER=nag
export BATCH_SIZE=4
export VAL_BATCH_SIZE=4
export LR=0.5
export LR_WARMUP_EPOCHS=2
export MAX_EPOCHS=40
export START_EVAL_AT=2
export EVALUATE_EVERY=1
export INPUT_SHAPE=32
export DATALOADER_WORKERS=1
export DEVICE=cpu

## System run params
export DGXNNODES=1
export DGXNGPU=1
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=15
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
