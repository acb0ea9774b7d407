"""The synthetic-data marker shared by every benchmark.

Each `<bench>/synthetic.py` writes its dataset in the benchmark's real
on-disk layout and, last, `SYNTHETIC.json` in the dataset's root: the spec it
was written from and what it measured (e.g. the best reachable quality). The
marker is what makes a run log `data_synthetic: true` (the harness reads it,
no benchmark has to remember), and a synthetic log can never be packaged as a
result. Written last, it also says the dataset is complete: a directory whose
marker holds the same spec is reused, anything else is written again.

`command` is every `python3 -m <bench>.synthetic DIR` entry point: each
number in the benchmark's spec dataclass is also an option (`--rows-per-day`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

MARKER = "SYNTHETIC.json"


def is_synthetic(data_dir: Path) -> bool:
    """Whether `data_dir` holds a dataset written by one of the synthetic generators."""
    return (Path(data_dir) / MARKER).is_file()


def read_marker(data_dir: Path) -> dict:
    return json.loads((Path(data_dir) / MARKER).read_text())


def already_written(data_dir: Path, spec: Mapping[str, Any]) -> bool:
    """A complete synthetic dataset from the same spec is in `data_dir` (its marker is written last)."""
    path = Path(data_dir) / MARKER
    if not path.is_file():
        return False
    try:
        return read_marker(data_dir).get("spec") == json.loads(json.dumps(dict(spec)))
    except json.JSONDecodeError:
        return False  # a marker cut short by an interrupted write: write the dataset again


def write_marker(data_dir: Path, spec: Mapping[str, Any], **facts: Any) -> dict:
    """Mark `data_dir` as a complete synthetic dataset; returns the marker's content."""
    content = {"synthetic": True, "spec": dict(spec), **facts}
    path = Path(data_dir) / MARKER
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(content, indent=1) + "\n")
    tmp.replace(path)  # atomic: a marker is either whole or absent
    return content


def command(doc: str, spec_type: type, write: Callable[[Path, Any], Any], argv=None) -> int:
    """`python3 -m <bench>.synthetic DIR [--field VALUE ...]`: write the dataset of `spec_type` unless it is there."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="dataset directory (created)")
    types = {"int": int, "float": float, "str": str}
    for field in dataclasses.fields(spec_type):
        kind = types.get(field.type if isinstance(field.type, str) else field.type.__name__)
        if kind is not None:
            parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=field.default,
                                help=f"default {field.default}")
    args = parser.parse_args(argv)
    spec = spec_type(**{f.name: getattr(args, f.name) for f in dataclasses.fields(spec_type) if hasattr(args, f.name)})
    module = sys.modules[spec_type.__module__]  # __main__ under `python3 -m`, whose spec keeps the real name
    bench = (module.__spec__.name if getattr(module, "__spec__", None) else spec_type.__module__).split(".")[0]
    if already_written(args.root, dataclasses.asdict(spec)):
        print(f"the synthetic {bench} dataset is already in {args.root}")
        return 0
    write(args.root, spec)
    print(f"wrote the synthetic {bench} dataset to {args.root}")
    return 0
