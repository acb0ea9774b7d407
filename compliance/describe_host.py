"""A system description (MLPerf system JSON) of the machine this runs on, for CPU dry runs.

    python3 -m compliance.describe_host > host.json
"""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import torch


# Fields every MLPerf training system description must have (system_desc_checker).
SYSTEM_FIELDS = [
    "submitter", "division", "status", "system_name", "number_of_nodes",
    "host_processors_per_node", "host_processor_model_name", "host_processor_core_count",
    "host_processor_vcpu_count", "host_processor_frequency", "host_processor_caches",
    "host_processor_interconnect", "host_memory_capacity", "host_storage_type",
    "host_storage_capacity", "host_networking", "host_networking_topology",
    "host_memory_configuration", "accelerators_per_node", "accelerator_model_name",
    "accelerator_host_interconnect", "accelerator_frequency", "accelerator_on-chip_memories",
    "accelerator_memory_configuration", "accelerator_memory_capacity", "accelerator_interconnect",
    "accelerator_interconnect_topology", "cooling", "hw_notes", "framework",
    "other_software_stack", "operating_system", "sw_notes",
]


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# A reference figure to compare hosts by, not a predictor of a dry run's time: fp32 matmul throughput with
# torch's default threads (one second of 1024 x 1024 products after a warm-up).
SPEED_PROBE = """
import time, torch
a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
for _ in range(3):
    a @ b
n, start = 0, time.perf_counter()
while time.perf_counter() - start < 1.0:
    a @ b
    n += 1
print(2 * 1024 ** 3 * n / (time.perf_counter() - start) / 1e9)
"""


def host_line() -> str:
    """This host's CPU model, core count and a measured fp32 matmul GFLOP/s, for the timings of CPU runs (the dry
    run, seed sweeps): the same dry run's time differs by 2x between 2-core machines (docs/dryrun.md), and this
    line says which machine measured it."""
    try:
        proc = subprocess.run([sys.executable, "-c", SPEED_PROBE], capture_output=True, text=True, timeout=120,
                              check=True)
        speed = f"fp32 matmul {float(proc.stdout.split()[-1]):.0f} GFLOP/s"
    except subprocess.CalledProcessError as err:
        speed = f"speed probe failed ({(err.stderr.strip().splitlines() or [f'exit status {err.returncode}'])[-1]})"
    except (subprocess.TimeoutExpired, ValueError, IndexError) as err:
        speed = f"speed probe failed ({err})"
    return f"host: {cpu_model()}, {os.cpu_count()} cores, {speed} (torch, 1024 x 1024, default threads)"


def _memory() -> str:
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GB"
    return ""


def describe_host() -> dict:
    hostname = socket.gethostname().split(".")[0] or "host"
    name = "cpu_dryrun_" + "".join(c if c.isalnum() else "_" for c in hostname)
    desc = {field: "" for field in SYSTEM_FIELDS}
    desc.update({
        "submitter": "", "division": "closed", "status": "research", "system_name": name,
        "number_of_nodes": "1", "host_processors_per_node": "1",
        "host_processor_model_name": cpu_model(),
        "host_processor_core_count": str(len(os.sched_getaffinity(0))),
        "host_memory_capacity": _memory(), "accelerators_per_node": "0",
        "accelerator_model_name": "none (CPU)", "framework": f"PyTorch {torch.__version__}",
        "other_software_stack": {"python": platform.python_version()},
        "operating_system": platform.platform(),
        "sw_notes": "CPU dry run of the pipeline.",
    })
    return desc


if __name__ == "__main__":
    print(json.dumps(describe_host(), indent=4))
