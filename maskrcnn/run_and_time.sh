#!/bin/bash
# One timed Mask R-CNN run: torchrun on this node, or one process per srun task.
# Needs a sourced config_*.sh and DATADIR (the COCO 2017 root with train2017/, val2017/, annotations/, backbone/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ../common/run_and_time.sh
: "${DATADIR:?DATADIR is not set: the COCO 2017 root (train2017/, val2017/, annotations/, backbone/)}"
mlperf_run_and_time maskrcnn maskrcnn.train --data-dir "${DATADIR}" ${BACKBONE_CHECKPOINT:+--backbone-checkpoint "${BACKBONE_CHECKPOINT}"}
