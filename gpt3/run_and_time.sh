#!/bin/bash
# One timed GPT-3 run: torchrun on this node, or one process per srun task.
# Needs a sourced config_*.sh and DATADIR (preproc_data/ with the C4 .bin/.idx files and
# the checkpoint directory ckpt*-consumed_samples=0/); INIT_CHECKPOINT points elsewhere.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ../common/run_and_time.sh
: "${DATADIR:?DATADIR is not set: the GPT-3 data root (preproc_data/, ckpt*-consumed_samples=0/)}"
mlperf_run_and_time gpt3 gpt3.train --data-dir "${DATADIR}" ${INIT_CHECKPOINT:+--init-checkpoint "${INIT_CHECKPOINT}"}
