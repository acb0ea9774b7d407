# Shared body of every benchmark's run_and_time.sh (sourced, not run).
#
#   mlperf_run_and_time NAME MODULE [ARGS...]
#
# Times one training run of `python3 -m MODULE ARGS --seed $SEED` and prints
# NVIDIA's STARTING/ENDING TIMING RUN and RESULT,NAME,SEED,SECONDS,USER,START
# lines (from rank 0 only). Under srun (SLURM_STEP_ID set) every task is one
# training process; otherwise torchrun starts DGXNGPU processes on this node.

mlperf_run_and_time() {
    local name=${1:?benchmark name} module=${2:?python module}
    shift 2
    : "${DGXSYSTEM:?DGXSYSTEM is not set: source a config_*.sh file first}"
    : "${DGXNGPU:?DGXNGPU is not set: source a config_*.sh file first}"
    local seed=${SEED:-$(( $(od -An -N4 -tu4 /dev/urandom) % 2147483648 ))}
    # The repo root (parent of this file's folder) makes common/ and the benchmark
    # importable whether or not the project is pip-installed.
    PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)${PYTHONPATH:+:${PYTHONPATH}}"
    export PYTHONPATH
    local rank=0
    [[ -n "${SLURM_STEP_ID:-}" ]] && rank=${SLURM_PROCID:-0}

    local start start_fmt status=0
    start=$(date +%s)
    start_fmt=$(date +'%Y-%m-%d %r')
    (( rank == 0 )) && echo "STARTING TIMING RUN AT ${start_fmt}"
    if [[ -n "${SLURM_STEP_ID:-}" || "${DGXNGPU}" -eq 1 ]]; then
        python3 -u -m "${module}" --seed "${seed}" "$@" || status=$?
    else
        python3 -u -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node="${DGXNGPU}" \
            -m "${module}" --seed "${seed}" "$@" || status=$?
    fi
    if (( rank == 0 )); then
        echo "ENDING TIMING RUN AT $(date +'%Y-%m-%d %r')"
        echo "RESULT,${name},${seed},$(( $(date +%s) - start )),${USER:-$(id -un)},${start_fmt}"
    fi
    return "${status}"
}
