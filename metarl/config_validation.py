"""Config files: a frozen dataclass loaded from YAML and validated before any work starts.

The base layer of both halves of metarl (RL: `metarl.config.TrainConfig`; supervised:
`metarl.supervised.config.SupervisedConfig`). The YAML keys are the field names of the
dataclass a caller passes. An unknown key, a value of the wrong type or an out-of-range
value raises `ConfigError` naming the key (and the valid choices where there are some).
`--set key=value` overrides go through the same checks; the value is read as YAML
(`0.1`, `true`, `[64, 64]`). Field metadata built by `choices`, `at_least`, `fraction`
and `run_setting` says what a field accepts.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path

import yaml

Config = typing.TypeVar("Config")


class ConfigError(ValueError):
    """A user's configuration is invalid; the message names the key."""


def choices(*values):
    """Field metadata: the value must be one of `values`."""
    return {"choices": values}


def at_least(low, *, strict=False):
    """Field metadata: the value must be >= low (> low if strict)."""

    def check(value):
        if value < low or (strict and value == low):
            return f"must be {'>' if strict else '>='} {low}"
        return None

    return {"check": check}


def run_setting(**metadata):
    """Field metadata: how the run executes, not what it computes (may change on resume).

    The samplers give the same rollouts whatever their workers, envs and threads, so a
    run moved to a cluster, or given more threads, resumes into the same results.
    """
    return {**metadata, "run_setting": True}


def run_setting_keys(cls) -> set[str]:
    """The keys of config dataclass `cls` that may change when a run is resumed."""
    return {f.name for f in dataclasses.fields(cls) if f.metadata.get("run_setting")}


def fraction():
    """Field metadata: the value must be in (0, 1]."""
    return {"check": lambda v: None if 0 < v <= 1 else "must be in (0, 1]"}


def _check_type(key: str, value, expected):
    """The value converted to the annotated type `expected`, or ConfigError naming the key."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(expected)
        if value is None and type(None) in options:
            return None
        expected = next(o for o in options if o is not type(None))
        origin = typing.get_origin(expected)
    if origin is list:
        (item,) = typing.get_args(expected)
        if not isinstance(value, list):
            raise ConfigError(f"key {key!r}: expected a list of {item.__name__}, got {value!r}")
        return [_check_type(key, v, item) for v in value]
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"key {key!r}: expected true or false, got {value!r}")
        return value
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"key {key!r}: expected an integer, got {value!r}")
        return value
    if expected is float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ConfigError(f"key {key!r}: expected a finite number, got {value!r}")
        return float(value)
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"key {key!r}: expected a string, got {value!r}")
        return value
    raise AssertionError(f"unhandled type {expected} for {key}")


def config_from_dict(cls: type[Config], values: dict, source: str = "config") -> Config:
    """Validate a mapping of keys to values and build the config dataclass `cls`.

    Each field's type hint is enforced; `metadata={"choices": ...}` restricts the values
    and `metadata={"check": f}` rejects a value where f(value) returns a reason. `source`
    (a file name) starts every error message.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    if not isinstance(values, dict):
        raise ConfigError(
            f"{source}: expected a mapping of keys to values, got {type(values).__name__}"
        )
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    missing = [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and name not in values
    ]
    if missing:
        raise ConfigError(f"{source}: missing required key(s) {missing}")
    checked = {}
    for key, value in values.items():
        try:
            value = _check_type(key, value, hints[key])
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None
        meta = fields[key].metadata
        if value is not None and "choices" in meta and value not in meta["choices"]:
            raise ConfigError(
                f"{source}: key {key!r}: {value!r} is not one of {list(meta['choices'])}"
            )
        if value is not None and "check" in meta:
            problem = meta["check"](value)
            if problem:
                raise ConfigError(f"{source}: key {key!r} {problem}, got {value!r}")
        checked[key] = value
    try:
        return cls(**checked)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def parse_overrides(overrides: list[str]) -> dict:
    """`["key=value", ...]` -> {key: YAML value}; a malformed override names itself."""
    values = {}
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {override!r}: expected key=value")
        try:
            values[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {override!r}: value is not valid YAML ({error})") from None
    return values


def load_config(cls: type[Config], path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply `--set` overrides, validate into the dataclass `cls`."""
    fields = {f.name for f in dataclasses.fields(cls)}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values")
    override_values = parse_overrides(overrides or [])
    unknown = sorted(set(override_values) - fields)
    if unknown:
        raise ConfigError(f"--set: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    return config_from_dict(cls, {**values, **override_values}, str(path))


def config_to_yaml(config) -> str:
    """The config as YAML, keys in field order: what `load_config` reads back."""
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
