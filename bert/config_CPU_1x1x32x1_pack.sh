# CPU dry run of the same code on the synthetic corpus (make smoke BENCH=bert):
# 1 node x 1 process x 32 packed rows x 1 accumulation step; the tiny model
# (2 layers, hidden 64, 128-token rows), started from the synthetic phase-1 checkpoint.
# Global batch 32 rows x packing factor 2 = 64 sequences; eval every 1,600 sequences (25 steps).

## DL params
export MODEL_SIZE=debug
export DROPOUT=0.0           # dropout only slows the tiny model down on the synthetic corpus
export BATCHSIZE=32
export PACKING_FACTOR=2
export GRADIENT_STEPS=1
export LR=0.02
export MAX_SAMPLES_TERMINATION=64000
export MAX_STEPS=1000
export OPT_LAMB_BETA_1=0.9
export OPT_LAMB_BETA_2=0.999
export WARMUP_STEPS=0
export START_WARMUP_STEP=0
export WEIGHT_DECAY_RATE=0.01
export EVAL_ITER_SAMPLES=1600
export EVAL_BATCHSIZE=500
export DATALOADER_WORKERS=0
export DEVICE=cpu

## System run params
export DGXNNODES=1
export DGXNGPU=1
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=10
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
