"""Typed configuration from NVIDIA-style `config_*.sh` files.

A config file exports shell variables (`BATCHSIZE`, `LR`, `DGXNNODES`, ...);
each benchmark declares frozen dataclasses whose fields name the variable they
come from (`env_field`). `load_configs` reads the values from the environment
the launcher passed down (so `NUMEPOCHS=40 ./run_and_time.sh` overrides work),
falling back to what the file itself exports, and rejects:

- a required variable that is not set,
- a variable the file exports that no dataclass knows (a typo, or a knob this
  implementation does not have),
- a value that does not parse as the field's type or is not one of its choices,
- a variable set to an empty string (unset it to take its default),

each with an error naming the variable and the config file.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

MISSING = dataclasses.MISSING

# The node a DGXSYSTEM name (`<node>_<shape>`) stands for, as NVIDIA's v3.0 logs name it in
# submission_platform ("8xNVIDIA DGX H100"); another node logs its own name.
PLATFORM_NAMES = {"DGXH100": "NVIDIA DGX H100", "HGXH100": "NVIDIA HGX H100"}

# Variables bash itself sets in any shell; never "exported by" a config file.
_SHELL_VARS = {"PWD", "OLDPWD", "SHLVL", "_"}

# Variables config files may export that the Python side does not read: the
# shell layer's, sbatch's own, and the node description of NVIDIA's configs.
SHELL_ONLY_VARS = {
    "WALLTIME": "SLURM time limit in minutes (sbatch -t)",
    "WALLTIME_MINUTES": "time limit of one experiment, used to compute WALLTIME",
    "NEXP": "number of experiments run.sub runs back to back",
    "SBATCH_NETWORK": "read by sbatch itself (e.g. sharp)",
    "DGXSOCKETCORES": "CPU cores per socket (node description)",
    "DGXNSOCKET": "CPU sockets per node (node description)",
    "DGXHT": "hardware threads per core (node description)",
}


class ConfigError(ValueError):
    """A config file or the environment does not describe a valid run."""


def env_field(env: str, help: str, default: Any = MISSING) -> Any:
    """A dataclass field read from the environment variable `env`."""
    return dataclasses.field(default=default, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class SystemConfig:
    """The run shape and submission identity shared by every benchmark."""

    system: str = env_field("DGXSYSTEM", "config name without config_ and .sh")
    nodes: int = env_field("DGXNNODES", "number of nodes")
    gpus_per_node: int = env_field("DGXNGPU", "processes (GPUs) per node")
    org: str = env_field("MLPERF_SUBMISSION_ORG", "submitting organisation", "mlperf-h100")
    platform: str = env_field("MLPERF_SUBMISSION_PLATFORM",
                              "platform logged as submission_platform; default <nodes>x<node name>, "
                              "e.g. 8xNVIDIA DGX H100 for DGXSYSTEM=DGXH100_8x8x50x1", "")
    division: Literal["closed", "open"] = env_field("MLPERF_DIVISION", "submission division", "closed")
    status: Literal["onprem", "cloud", "preview", "research"] = env_field(
        "MLPERF_STATUS", "submission status", "onprem")

    @property
    def submission_platform(self) -> str:
        node = self.system.split("_", 1)[0]
        return self.platform or f"{self.nodes}x{PLATFORM_NAMES.get(node, node)}"


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how a benchmark runs, the same variables for every benchmark; none changes what is trained.

    A benchmark that lacks a choice (ResNet-50 has no debug model, no FP8 path)
    says so through `require`, naming the variable and the file.
    """

    device: Literal["auto", "cpu", "cuda"] = env_field("DEVICE", "where to train: auto takes a GPU when there is one",
                                                       "auto")
    model_size: Literal["full", "debug"] = env_field(
        "MODEL_SIZE", "full: the benchmark's model; debug: the same code at CPU size", "full")
    precision: Literal["fp32", "bf16", "fp8"] = env_field(
        "PRECISION", "fp32; bf16 autocast; fp8: bf16 plus Transformer Engine FP8 linears (GPU)", "fp32")
    torch_compile: bool = env_field("TORCH_COMPILE", "torch.compile the model's repeated blocks", False)
    num_workers: int = env_field("DATALOADER_WORKERS", "data-loading worker processes per rank", 2)
    dist_timeout_s: int = env_field(
        "DIST_TIMEOUT_S", "seconds a collective waits for the other ranks before the run fails (a hung rank); "
        "PyTorch's own default is 1800", 300)
    process_group: Literal["auto", "always"] = env_field(
        "PROCESS_GROUP", "auto: join a process group when there are several ranks; always: also as one process "
        "(NCCL on a GPU, gloo on a CPU), so a one-GPU check runs the real collectives", "auto")
    stop_after_evals: int = env_field(
        "STOP_AFTER_EVALS", "end the run after this many evaluations (run_stop aborted, the log marked "
        "stop_after_evals, never packaged): a check that the run path works (make gpu-check); 0: to the target", 0)

    def __post_init__(self):
        if self.num_workers < 0:
            raise ValueError(f"DATALOADER_WORKERS={self.num_workers} must be >= 0")
        if self.dist_timeout_s <= 0:
            raise ValueError(f"DIST_TIMEOUT_S={self.dist_timeout_s} must be > 0")
        if self.stop_after_evals < 0:
            raise ValueError(f"STOP_AFTER_EVALS={self.stop_after_evals} must be >= 0 (0: train to the target)")


def require(ok: bool, config_file, variable: str, message: str) -> None:
    """A benchmark's own limit on a config variable: a ConfigError naming the variable and the file."""
    if not ok:
        raise ConfigError(f"{config_file}: {variable}: {message}")


def read_config_file(config_file: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a config file exports, found by sourcing it in an empty environment (plus `env`, e.g. NEXP)."""
    if not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist")
    script = 'source "$1" >/dev/null && env -0'
    proc = subprocess.run(["bash", "-c", script, "bash", str(config_file)],
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})},
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ConfigError(f"{config_file}: sourcing failed: {proc.stderr.strip()}")
    exported = dict(item.split("=", 1) for item in proc.stdout.split("\0") if "=" in item)
    for name in _SHELL_VARS | {"PATH"}:
        exported.pop(name, None)
    return exported


def _parse(raw: str, typ: Any, name: str, where: str, help: str) -> Any:
    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{where}: {name}={raw!r} is not {expected} ({help})")

    if typing.get_origin(typ) is Literal:
        choices = typing.get_args(typ)
        if raw not in choices:
            raise fail("one of " + ", ".join(map(str, choices)))
        return raw
    if typ is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise fail("a boolean (0/1)")
    if typ is int:
        try:
            return int(raw)
        except ValueError:
            raise fail("an integer") from None
    if typ is float:
        try:
            return float(raw)
        except ValueError:
            raise fail("a number") from None
    if typ is str:
        return raw
    raise TypeError(f"unsupported config field type {typ!r} for {name}")


def _build(cls: type, values: Mapping[str, str], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        name, help = f.metadata["env"], f.metadata["help"]
        if name in values and not values[name].strip() and not (hints[f.name] is str and f.default == ""):
            default = "" if f.default is MISSING else f" (its default: {f.default!r})"
            raise ConfigError(f"{where}: {name} is set but empty; give it a value or leave it unset{default} "
                              f"({help})")
        if name in values:
            kwargs[f.name] = _parse(values[name], hints[f.name], name, where, help)
        elif f.default is MISSING:
            raise ConfigError(f"{where}: required variable {name} is not set ({help})")
    try:
        return cls(**kwargs)
    except ValueError as err:  # a dataclass's own range checks
        raise ConfigError(f"{where}: {err}") from None


def load_configs(config_file: Path, *classes: type,
                 environ: Mapping[str, str] | None = None) -> tuple:
    """Build one instance of each dataclass from `config_file` and `environ`."""
    config_file = Path(config_file)
    environ = os.environ if environ is None else environ
    known = set(SHELL_ONLY_VARS)
    for cls in classes:
        known |= {f.metadata["env"] for f in dataclasses.fields(cls)}
    exported = read_config_file(config_file)
    unknown = sorted(set(exported) - known)
    if unknown:
        raise ConfigError(f"{config_file}: exports unknown variable(s) {', '.join(unknown)}; "
                          f"this benchmark reads: {', '.join(sorted(known))}")
    values = {**exported, **{k: v for k, v in environ.items() if k in known}}
    return tuple(_build(cls, values, str(config_file)) for cls in classes)


def default_config_file(bench_dir: Path, environ: Mapping[str, str] | None = None) -> Path:
    """`<bench_dir>/config_$DGXSYSTEM.sh`: the file the launcher sourced."""
    environ = os.environ if environ is None else environ
    system = environ.get("DGXSYSTEM")
    if not system:
        raise ConfigError("DGXSYSTEM is not set: source a config_*.sh file first, or pass --config")
    return Path(bench_dir) / f"config_{system}.sh"


def describe(*classes: type) -> str:
    """Help text: every variable, its meaning and default."""
    lines = []
    for cls in classes:
        for f in dataclasses.fields(cls):
            default = "required" if f.default is MISSING else f"default {f.default!r}"
            lines.append(f"  {f.metadata['env']:<28} {f.metadata['help']} ({default})")
    return "\n".join(lines)


def run_arguments(doc: str, run_config: type, data_help: str) -> argparse.ArgumentParser:
    """The command line every `<bench>.train` takes (--data-dir, --config, --seed, --log-file), its help
    listing the config variables; add the benchmark's own arguments, then `parse_run_arguments`."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="config variables (exported by config_*.sh):\n" + describe(SystemConfig, RuntimeConfig, run_config))
    parser.add_argument("--data-dir", type=Path, required=True, help=data_help)
    parser.add_argument("--config", type=Path, default=None,
                        help="config file (default: config_$DGXSYSTEM.sh next to the train module)")
    parser.add_argument("--seed", type=int, default=None, help="run seed (default: random, shared by all ranks)")
    parser.add_argument("--log-file", type=Path, default=None, help="also write the MLPerf log here")
    return parser


def parse_run_arguments(parser: argparse.ArgumentParser, bench_dir: Path, argv=None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    args.config = args.config or default_config_file(bench_dir)
    return args
