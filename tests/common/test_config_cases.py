"""Every config variable of every benchmark, set empty, set to a wrong type and left undefined: each is an error
naming the variable and the config file (the cases are generated from the config dataclasses)."""
from __future__ import annotations

import dataclasses
import importlib
import typing
from pathlib import Path

import pytest

from common.config import ConfigError, RuntimeConfig, SystemConfig, load_configs

REPO = Path(__file__).resolve().parents[2]
CPU_CONFIGS = sorted(REPO.glob("*/config_CPU_*.sh"))
WRONG = {int: "1.5x", float: "fast", bool: "maybe"}


def fields_of(config: Path):
    run_config = importlib.import_module(f"{config.parent.name}.train").RUN_CONFIG
    for cls in (SystemConfig, RuntimeConfig, run_config):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            yield cls, f, hints[f.name]


def cases():
    for config in CPU_CONFIGS:
        for cls, f, typ in fields_of(config):
            name = f.metadata["env"]
            if not (typ is str and f.default == ""):
                yield pytest.param(config, name, "", id=f"{config.parent.name}-{name}-empty")
            wrong = "not-a-choice" if typing.get_origin(typ) is typing.Literal else WRONG.get(typ)
            if wrong is not None:
                yield pytest.param(config, name, wrong, id=f"{config.parent.name}-{name}-wrong-type")
            if f.default is dataclasses.MISSING:
                yield pytest.param(config, name, None, id=f"{config.parent.name}-{name}-undefined")


@pytest.mark.parametrize("config, name, value", cases())
def test_a_bad_or_missing_variable_is_named_with_its_file(config, name, value, tmp_path):
    classes = list(dict.fromkeys(cls for cls, _, _ in fields_of(config)))
    if value is None:  # the file's definition removed
        broken = tmp_path / config.name
        broken.write_text(f'source "{config}"\nunset {name}\n')
        with pytest.raises(ConfigError, match=rf"{broken}: required variable {name} is not set"):
            load_configs(broken, *classes, environ={})
    else:
        with pytest.raises(ConfigError, match=rf"^{config}: {name}[= ]"):
            load_configs(config, *classes, environ={name: value})
