# CPU dry run of the same code on the synthetic dataset (make smoke BENCH=dlrm_dcnv2):
# 1 node x 1 process x global batch 2048; the small model (tables <= 1,000 rows, dim 16).
# Synthetic epoch: 23 days x 16,384 rows = 376,832 rows = 184 steps; 20 evaluations (every 9 steps).

## DL params
export MODEL_SIZE=debug
export BATCHSIZE=2048
export BATCHSIZE_EVAL=16384
export LEARNING_RATE=0.02
export DATA_FORMAT=numpy
export DEVICE=cpu

## System run params
export DGXNNODES=1
export DGXNGPU=1
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=10
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
