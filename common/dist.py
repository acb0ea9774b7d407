"""Distributed initialisation: the one place that reads torchrun's and SLURM's variables.

Launch paths:
- `torchrun` sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT;
- `srun` (one task per GPU, from run.sub) sets SLURM_PROCID/SLURM_NTASKS/
  SLURM_LOCALID and the node list, whose first host becomes the master;
- neither: a single process.
torchrun's variables win when both are present (torchrun inside an allocation).
Backend: NCCL on GPUs, gloo on CPUs.
"""
from __future__ import annotations

import atexit
import datetime
import os
import re
import secrets
import sys
import traceback
from dataclasses import dataclass
from typing import Callable, Mapping, NoReturn

import torch
import torch.distributed as dist

DEFAULT_MASTER_PORT = 29500

# Whether this process ever joined a process group: its backend's threads then outlive
# destroy_process_group (see exit_after).
_group_started = False


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str
    master_port: int
    launcher: str  # "torchrun" | "slurm" | "single"


def first_host(nodelist: str) -> str:
    """First host of a SLURM node list: 'gpu[003-005,009],cpu1' -> 'gpu003'."""
    nodelist = nodelist.strip()
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist)
    if not match or not match.group(1):
        raise ValueError(f"cannot parse SLURM node list {nodelist!r}")
    prefix, ranges = match.group(1), match.group(2)
    if ranges is None:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def _tasks_on_first_node(tasks_per_node: str) -> int:
    """SLURM_TASKS_PER_NODE looks like '8(x4)' or '2,1'; every node runs the same here."""
    match = re.match(r"(\d+)", tasks_per_node)
    if not match:
        raise ValueError(f"cannot parse SLURM_TASKS_PER_NODE={tasks_per_node!r}")
    return int(match.group(1))


def read_dist_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    env = os.environ if environ is None else environ

    def get_int(name: str) -> int:
        try:
            return int(env[name])
        except ValueError:
            raise ValueError(f"environment variable {name}={env[name]!r} is not an integer") from None

    port = get_int("MASTER_PORT") if "MASTER_PORT" in env else DEFAULT_MASTER_PORT
    if "RANK" in env and "WORLD_SIZE" in env:
        world = get_int("WORLD_SIZE")
        return DistEnv(rank=get_int("RANK"), world_size=world,
                       local_rank=get_int("LOCAL_RANK") if "LOCAL_RANK" in env else 0,
                       local_world_size=get_int("LOCAL_WORLD_SIZE") if "LOCAL_WORLD_SIZE" in env else world,
                       master_addr=env.get("MASTER_ADDR", "127.0.0.1"), master_port=port,
                       launcher="torchrun")
    # SLURM_STEP_ID marks a task started by srun; the batch script itself also
    # has SLURM_PROCID but is not a training process.
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env and "SLURM_STEP_ID" in env:
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
        if not nodelist:
            raise ValueError("SLURM task without SLURM_STEP_NODELIST/SLURM_JOB_NODELIST")
        per_node = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE", "1")
        return DistEnv(rank=get_int("SLURM_PROCID"), world_size=get_int("SLURM_NTASKS"),
                       local_rank=get_int("SLURM_LOCALID") if "SLURM_LOCALID" in env else 0,
                       local_world_size=_tasks_on_first_node(per_node),
                       master_addr=env.get("MASTER_ADDR") or first_host(nodelist),
                       master_port=port, launcher="slurm")
    return DistEnv(rank=0, world_size=1, local_rank=0, local_world_size=1,
                   master_addr="127.0.0.1", master_port=port, launcher="single")


def select_device(denv: DistEnv, requested: str = "auto") -> torch.device:
    """`auto` takes this process's GPU when there is one, else the CPU."""
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        # Split the cores between the processes of this node instead of
        # oversubscribing them (torchrun does not pin processes).
        cores = len(os.sched_getaffinity(0))
        torch.set_num_threads(max(1, cores // max(1, denv.local_world_size)))
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("DEVICE=cuda but no CUDA device is visible")
    torch.cuda.set_device(denv.local_rank % torch.cuda.device_count())
    return torch.device("cuda", torch.cuda.current_device())


DEFAULT_TIMEOUT_S = 300  # RuntimeConfig's DIST_TIMEOUT_S default


def init_distributed(denv: DistEnv, device: torch.device, timeout_s: int = DEFAULT_TIMEOUT_S) -> None:
    """Join the process group. `timeout_s` bounds every collective's wait for the other ranks: a hung rank
    fails the run after it, instead of after PyTorch's 30 minutes of the whole allocation (a dead one is
    seen sooner: its connections close, and the launcher ends the rest)."""
    global _group_started
    if denv.world_size == 1:
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    _group_started = True
    dist.init_process_group(backend=backend, rank=denv.rank, world_size=denv.world_size,
                            init_method=f"tcp://{denv.master_addr}:{denv.master_port}",
                            timeout=datetime.timedelta(seconds=timeout_s),
                            device_id=device if device.type == "cuda" else None)


def ensure_process_group(device: torch.device) -> None:
    """A one-rank process group when none was started (a single process): for code that always needs
    one (DeviceMesh, TorchRec's DistributedModelParallel), so one process runs the same path as many."""
    global _group_started
    if not dist.is_initialized():
        _group_started = True
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=dist.HashStore(),
                                rank=0, world_size=1)


def start(denv: DistEnv, device_choice: str, seed: int | None, timeout_s: int = DEFAULT_TIMEOUT_S,
          always_group: bool = False) -> tuple[torch.device, int]:
    """Pick this rank's device, join the process group (`always_group`: a one-rank group for a single process
    too, PROCESS_GROUP=always), and agree on the run seed (random unless given)."""
    device = select_device(denv, device_choice)
    init_distributed(denv, device, timeout_s)
    if always_group:
        ensure_process_group(device)
    return device, broadcast_int(seed if seed is not None else secrets.randbelow(2**31), device)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_after(main: Callable[[], int | None]) -> NoReturn:
    """Run a training entry point and leave the process with its exit code (an exception: its traceback, 1).

    A process that joined a process group leaves by `os._exit` after the `atexit` handlers (logging's
    flush and close, multiprocessing's reaping of DataLoader workers), without interpreter finalization:
    destroy_process_group does not join gloo's threads (`gloo_tcp_loop`, `pt_gloo_runloop`), and one
    that drops its last reference to a finished work object during Py_FinalizeEx frees a tensor, which
    takes the GIL, which finalization answers by ending the thread inside a noexcept destructor:
    `terminate called without an active exception`, SIGABRT, after run_stop had logged success
    (gdb: `c10d::ProcessGroupGloo::runLoop` -> `decref_pyobject` -> `gil_scoped_acquire` ->
    `PyThread_exit_thread`; pytorch/pytorch#179291). A 2-rank gloo run aborted so in 5-14 of 50 runs;
    bert's two-process CI test failed on it. A process that never joined one exits normally."""
    try:
        code = main()
    except SystemExit as e:
        code = e.code
    except BaseException:
        if not _group_started:
            raise
        traceback.print_exc()
        code = 1
    if not _group_started:
        raise SystemExit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):  # SystemExit("message"): printed, exit status 1, as Python does
        print(code, file=sys.stderr)
        code = 1
    leave(code)


def leave(code: int) -> NoReturn:
    """Exit now with `code` after the `atexit` handlers and a flush of stdio, without interpreter finalization
    (where gloo's threads abort a process: see `exit_after`); also for workers that join a group themselves."""
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum across ranks; a no-op in a single process."""
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def broadcast_int(value: int, device: torch.device) -> int:
    """Rank 0's value on every rank (used for the seed)."""
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())
