#!/bin/bash
# One timed RNN-T run: torchrun on this node, or one process per srun task.
# Needs a sourced config_*.sh and DATADIR (LibriSpeech WAVs, manifests and sentencepieces/ in the MLPerf layout).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ../common/run_and_time.sh
: "${DATADIR:?DATADIR is not set: the LibriSpeech folder (*-wav/, librispeech-*-wav.json, sentencepieces/)}"
mlperf_run_and_time rnnt rnnt.train --data-dir "${DATADIR}"
