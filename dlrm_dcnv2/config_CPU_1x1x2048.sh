# CPU dry run of the same code on the synthetic dataset (make smoke BENCH=dlrm_dcnv2):
# 1 node x 1 process x global batch 2048; the small model (tables <= 1,000 rows, dim 16).
# Synthetic epoch: 23 days x 16,384 rows = 376,832 rows = 184 steps; 20 evaluations (every 9 steps, the last
# after step 180, as NVIDIA places them: dlrm_dcnv2/train.py run_plan).
# LR 0.01: with the rules' zero initial accumulator, Adagrad's first step moves every weight by about
# the LR whatever its gradient. At 0.02 that step overshoots the logit (-1.9 instead of the base rate's
# -0.43) and can switch off all 16 ReLU outputs of the debug model's bottom MLP for good: seed
# 1416050522 ended the epoch at AUC 0.680, and other seeds recovered only late (docs/sweeps/dlrm_dcnv2.md).

## DL params
export MODEL_SIZE=debug
export BATCHSIZE=2048
export BATCHSIZE_EVAL=16384
export LEARNING_RATE=0.01
export DATA_FORMAT=numpy
export DEVICE=cpu

## System run params
export DGXNNODES=1
export DGXNGPU=1
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=10
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
