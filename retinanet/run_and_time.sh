#!/bin/bash
# One timed RetinaNet run: torchrun on this node, or one process per srun task.
# Needs a sourced config_*.sh and DATADIR (the OpenImages MLPerf root with train/, validation/, backbone/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ../common/run_and_time.sh
: "${DATADIR:?DATADIR is not set: the OpenImages MLPerf root (train/, validation/, backbone/)}"
mlperf_run_and_time ssd retinanet.train --data-dir "${DATADIR}" ${BACKBONE_CHECKPOINT:+--backbone-checkpoint "${BACKBONE_CHECKPOINT}"}
