#!/bin/bash
# `make smoke BENCH=<folder>`: one CPU run of a benchmark through its
# run_and_time.sh, on its synthetic dataset (written on first use), followed by
# the official compliance verdict and the time to target.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench=${1:?usage: smoke.sh BENCH_FOLDER}
export BENCH_DIR="${repo}/${bench}"
[[ -d "${BENCH_DIR}" ]] || { echo "smoke: no benchmark folder ${BENCH_DIR}" >&2; exit 2; }
shopt -s nullglob
configs=("${BENCH_DIR}"/config_CPU_*.sh)
(( ${#configs[@]} == 1 )) || { echo "smoke: expected exactly one ${BENCH_DIR}/config_CPU_*.sh, found ${#configs[@]}" >&2; exit 2; }
source "${configs[0]}"
export DATADIR=${DATADIR:-${repo}/data/${bench}-synthetic}
export LOGDIR=${LOGDIR:-${repo}/results/${bench}}
export NEXP=1
# DATA_CHECKED=1: the caller (the dry run) has already run this check on DATADIR
[[ "${DATA_CHECKED:-}" == 1 ]] || python3 -m "${bench}.synthetic" "${DATADIR}"
exec "${repo}/common/run_local.sh"
