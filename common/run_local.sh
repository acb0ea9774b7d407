#!/bin/bash
# NEXP timed runs of one benchmark on this node without SLURM: the same loop as
# run.sub (cache clearing, per-experiment log, compliance check), with
# run_and_time.sh starting DGXNGPU processes through torchrun.
#   cd resnet50 && source config_DGXH100_1x8x400x1.sh
#   DATADIR=/raid/imagenet LOGDIR=$PWD/results NEXP=5 ../common/run_local.sh
set -euo pipefail
export BENCH_DIR=${BENCH_DIR:-${PWD}}
[[ -x "${BENCH_DIR}/run_and_time.sh" ]] ||
    { echo "run_local.sh: no run_and_time.sh in ${BENCH_DIR}; run it from a benchmark folder or set BENCH_DIR" >&2; exit 2; }
source "$(dirname "${BASH_SOURCE[0]}")/experiments.sh"
LAUNCHER=local mlperf_experiments
