# Shared body of every run.sub and of `make smoke` (sourced, not run).
#
#   LAUNCHER=srun|local mlperf_experiments
#
# Runs NEXP timed experiments of the benchmark in BENCH_DIR. Each experiment
# clears the page cache (not with CLEAR_CACHES=0, the CPU dry run's setting) and logs
# cache_clear, runs ./run_and_time.sh —
# through srun, one task per GPU, in the container $CONT when it is set, or
# directly on this node — tees everything into $LOGDIR/<DATESTAMP>_<i>.log and
# runs the official compliance checker (ruleset 3.0.0) on that log. Every
# experiment runs; the function fails if any training or any check failed.

_mlperf_srun() {
    if [[ -n "${CONT:-}" ]]; then
        srun --container-image="${CONT}" \
             --container-mounts="${DATADIR}:/data,${LOGDIR}:/results" \
             --container-workdir="/workspace/mlperf/$(basename "${BENCH_DIR}")" \
             --export=ALL,DATADIR=/data,LOGDIR=/results "$@"
    else
        srun --chdir="${BENCH_DIR}" "$@"
    fi
}

_mlperf_clear_caches() {
    local cleared=false
    if [[ "${CLEAR_CACHES:-1}" == 0 ]]; then  # the CPU dry run's synthetic runs (compliance.dryrun); never a result
        echo "CLEAR_CACHES=0: the page cache is not dropped; logging cache_clear=false"
        _mlperf_log_cache_clear false
        return
    fi
    local drop='sync && if [[ $(id -u) -eq 0 ]]; then echo 3 > /proc/sys/vm/drop_caches; else sudo -n /sbin/sysctl -q vm.drop_caches=3; fi'
    if [[ "${LAUNCHER}" == srun ]]; then
        srun --ntasks="${SLURM_JOB_NUM_NODES}" --ntasks-per-node=1 bash -c "${drop}" 2>/dev/null && cleared=true
    else
        bash -c "${drop}" 2>/dev/null && cleared=true
    fi
    [[ "${cleared}" == true ]] || echo "WARNING: could not drop the page cache (needs root or sudo);" \
        "logging cache_clear=false (compliance.package refuses such a log as a result)"
    _mlperf_log_cache_clear "${cleared}"
}

_mlperf_log_cache_clear() {
    if [[ "${LAUNCHER}" == srun ]]; then
        _mlperf_srun --ntasks=1 python3 -m common.mlperf_log cache_clear "$1"
    else
        python3 -m common.mlperf_log cache_clear "$1"
    fi
}

_mlperf_launch() {
    if [[ "${LAUNCHER}" == srun ]]; then
        # --kill-on-bad-exit: a rank that dies takes the others down instead of
        # leaving them blocked in a collective until the NCCL/gloo timeout.
        _mlperf_srun --ntasks-per-node="${DGXNGPU}" --kill-on-bad-exit=1 ./run_and_time.sh
    else
        (cd "${BENCH_DIR}" && ./run_and_time.sh)
    fi
}

_mlperf_end_aborted() {  # a training process that died (SIGKILL, abort) left its log without run_stop
    local log=$1
    if [[ "${LAUNCHER}" == srun && -n "${CONT:-}" ]]; then
        _mlperf_srun --ntasks=1 python3 -m common.mlperf_log --end-aborted "/results/$(basename "${log}")"
    else
        python3 -m common.mlperf_log --end-aborted "${log}"
    fi
}

_mlperf_check() {
    local log=$1
    if [[ "${LAUNCHER}" == srun && -n "${CONT:-}" ]]; then
        _mlperf_srun --ntasks=1 python3 -m compliance.check "/results/$(basename "${log}")"
    else
        python3 -m compliance.check "${log}"
    fi
}

mlperf_experiments() {
    : "${BENCH_DIR:?BENCH_DIR is not set}"
    : "${LAUNCHER:?LAUNCHER must be srun or local}"
    : "${DGXSYSTEM:?DGXSYSTEM is not set: source a config_*.sh file first}"
    : "${DGXNGPU:?DGXNGPU is not set: source a config_*.sh file first}"
    : "${DATADIR:?DATADIR is not set: point it at the dataset}"
    : "${LOGDIR:?LOGDIR is not set: where the result logs go}"
    local nexp=${NEXP:-1} datestamp=${DATESTAMP:-$(date +%y%m%d%H%M%S%N)}
    local i log seed failures=()
    # Before any training: a log that cannot be written is a run lost (checked by writing, as root passes -w).
    local probe="${LOGDIR}/.writable.$$"
    if ! { mkdir -p "${LOGDIR}" && : > "${probe}" && rm -f "${probe}"; } 2>/dev/null; then
        echo "LOGDIR=${LOGDIR}: not a writable directory; the result logs cannot be written there" >&2
        return 2
    fi
    for (( i = 1; i <= nexp; i++ )); do
        log="${LOGDIR}/${datestamp}_${i}.log"
        # Every experiment needs its own seed (package checker); SEED fixes the first.
        seed=$(( ${SEED:-$(( $(od -An -N4 -tu4 /dev/urandom) % 2147483648 ))} + i - 1 ))
        echo "Beginning trial ${i} of ${nexp}: ${log}"
        if ! { _mlperf_clear_caches && SEED=${seed} _mlperf_launch; } 2>&1 | tee "${log}"; then
            failures+=("experiment ${i}: training failed (${log})")
            _mlperf_end_aborted "${log}" || true
        fi
        if ! _mlperf_check "${log}"; then
            failures+=("experiment ${i}: compliance check failed (${log})")
        fi
    done
    if (( ${#failures[@]} > 0 )); then
        printf 'FAILED: %s\n' "${failures[@]}"
        return 1
    fi
    echo "All ${nexp} experiment(s) passed; logs in ${LOGDIR}"
}
