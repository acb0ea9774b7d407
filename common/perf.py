"""What every benchmark script (`<bench>/bench.py`) needs to label its table: the device, in words and as a file slug."""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model with its core and torch thread counts."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    return (f"{model.group(1).strip() if model else 'unknown'} CPU, {os.cpu_count()} cores "
            f"({torch.get_num_threads()} torch threads)")


def device_slug(device: torch.device) -> str:
    """`cpu`, or the GPU's short model name (`h100`, `h200`) for docs/perf/<bench>_<slug>.md."""
    if device.type != "cuda":
        return "cpu"
    name = device_name(device)
    short = re.search(r"\b([A-Z]+\d+[A-Z]*)\b", name.replace("NVIDIA", ""))
    return (short.group(1) if short else re.sub(r"\W+", "_", name)).lower()


def write_table(text: str, bench: str, device: torch.device, out: Path | None = None) -> Path:
    """Print a benchmark's markdown table and write it to `out` (default docs/perf/<bench>_<device slug>.md)."""
    print(text)
    out = out or Path(__file__).resolve().parents[1] / "docs" / "perf" / f"{bench}_{device_slug(device)}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    return out
