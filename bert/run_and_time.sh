#!/bin/bash
# One timed BERT phase-2 run: torchrun on this node, or one process per srun task.
# Needs a sourced config_*.sh and DATADIR (packed_data/ or varlength/,
# eval_varlength/part_eval_10k.hdf5, phase1/model.ckpt-*.pt); TRAIN_DIR,
# EVAL_FILE and INIT_CHECKPOINT override the three locations.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ../common/run_and_time.sh
: "${DATADIR:?DATADIR is not set: the BERT data root (packed_data/, eval_varlength/, phase1/)}"
mlperf_run_and_time bert bert.train --data-dir "${DATADIR}" \
    ${TRAIN_DIR:+--train-dir "${TRAIN_DIR}"} ${EVAL_FILE:+--eval-file "${EVAL_FILE}"} \
    ${INIT_CHECKPOINT:+--init-checkpoint "${INIT_CHECKPOINT}"}
