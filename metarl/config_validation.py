"""Config files: a frozen dataclass loaded from YAML and validated before any work starts.

The base layer of both halves of metarl (RL: `metarl.config.TrainConfig`; supervised:
`metarl.supervised.config.SupervisedConfig`). The YAML keys are the field names of the
dataclass a caller passes. An unknown key, a value of the wrong type or an out-of-range
value raises `ConfigError` naming the key (and the valid choices where there are some).
`--set key=value` overrides go through the same checks; the value is read as YAML
(`0.1`, `true`, `[64, 64]`). Field metadata built by `choices`, `at_least`, `within`,
`fraction` and `run_setting` says what a field accepts. Reading the file (and what can be
wrong with it before any key is looked at) is `metarl.config_file`'s.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import sys
import types
import typing
from pathlib import Path

import yaml

from metarl.config_file import (
    ConfigError,
    parse_overrides,
    read_config_file,
    short_repr,
    text_number_hint,
)

Config = typing.TypeVar("Config")

# limits shared by the RL and supervised configs (README, "Limits")
MAX_SEED = 2**32 - 1  # the seeding of numpy and torch
MAX_THREADS = 1024  # torch.set_num_threads(100000) crashed a matrix product


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


def within(low, high, *, open_low=False):
    """Field metadata: the value must be in [low, high] ((low, high] if open_low)."""

    def check(value):
        if value < low or value > high or (open_low and value == low):
            return f"must be in {'(' if open_low else '['}{low:,}, {high:,}]"
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


def fraction(*, below_one=False):
    """Field metadata: the value must be in (0, 1] ((0, 1) if below_one)."""
    if below_one:
        return {"check": lambda v: None if 0 < v < 1 else "must be in (0, 1)"}
    return {"check": lambda v: None if 0 < v <= 1 else "must be in (0, 1]"}


def _as_finite_float(value) -> float | None:
    """The value as a finite float, or None (bools, text, NaN, inf, ints beyond float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value) if abs(value) <= sys.float_info.max else math.inf  # 10**400: no float
    return number if math.isfinite(number) else None


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
            raise ConfigError(
                f"key {key!r}: expected a list of {item.__name__}, got {short_repr(value)}"
            )
        return [_check_type(key, v, item) for v in value]
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"key {key!r}: expected true or false, got {short_repr(value)}")
        return value
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"key {key!r}: expected an integer, got {short_repr(value)}")
        return value
    if expected is float:
        number = _as_finite_float(value)
        if number is None:
            raise ConfigError(
                f"key {key!r}: expected a finite number, got {short_repr(value)}"
                + text_number_hint(value)
            )
        return number
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"key {key!r}: expected a string, got {short_repr(value)}")
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
    not_names = [key for key in values if not isinstance(key, str)]
    if not_names:
        raise ConfigError(
            f"{source}: key {short_repr(not_names[0])} is not a name: keys are the config's "
            "field names (text)"
        )
    unknown = sorted(set(values) - set(fields))
    if unknown:
        close = difflib.get_close_matches(unknown[0], fields, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{source}: unknown key(s) {unknown}{hint}; valid keys: {sorted(fields)}")
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
                f"{source}: key {key!r}: {short_repr(value)} is not one of {list(meta['choices'])}"
            )
        if value is not None and "check" in meta:
            problem = meta["check"](value)
            if problem:
                raise ConfigError(f"{source}: key {key!r} {problem}, got {short_repr(value)}")
        checked[key] = value
    try:
        return cls(**checked)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def load_config(cls: type[Config], path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply `--set` overrides, validate into the dataclass `cls`.

    A relative path in a field marked `path` (e.g. Omniglot's data_path) is read
    relative to the config file's folder, so a config works from any working
    directory; a `--set` path is relative to the working directory, as in a shell.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    path = Path(path)
    values = read_config_file(path)
    for key, value in values.items():
        if key in fields and fields[key].metadata.get("path") and isinstance(value, str):
            values[key] = os.path.normpath(path.parent.absolute() / value)  # absolute: kept
    override_values = parse_overrides(overrides or [])
    unknown = sorted(set(override_values) - set(fields))
    if unknown:
        raise ConfigError(f"--set: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    return config_from_dict(cls, {**values, **override_values}, str(path))


def config_to_yaml(config) -> str:
    """The config as YAML, keys in field order: what `load_config` reads back."""
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
