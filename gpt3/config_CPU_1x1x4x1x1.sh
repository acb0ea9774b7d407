# CPU dry run of the same code on the synthetic corpus (make smoke BENCH=gpt3):
# 1 node x 1 process x 4 sequences x TP 1 x PP 1; the CPU model (2 layers, hidden 64,
# the benchmark's 2048-token context), started from the synthetic checkpoint.
# Global batch 4: the rules put the checkpoint at step ceil(6,144,000 / 4) = 1,536,000, past
# the 101,760-step warmup, so the LR is ~2e-5 (the rules' base LR for this batch) throughout.
# Eval every 40 sequences (10 steps; the rules allow at most 24,576).

## DL params
export MODEL_SIZE=debug
export MINIBS=4
export MICRO_BATCH_SIZE=4
export TENSOR_MODEL_PARALLEL=1
export PIPELINE_MODEL_PARALLEL=1
export EVAL_EVERY_SAMPLES=40
export MAX_SAMPLES=2000
export PRECISION=fp32
export DEVICE=cpu

## System run params
export DGXNNODES=1
export DGXNGPU=1
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=15
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
