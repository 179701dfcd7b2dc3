"""Experiment configuration: a dataclass loaded from YAML, validated before any work starts.

The YAML keys are the field names of `TrainConfig` (the file is read by
`metarl.config_file`). An unknown key, a value of the wrong type or out of range,
conflicting keys or an unknown env id raise `ConfigError` naming the key (and the
valid choices where there are some). `--set key=value` overrides go through the
same checks; the value is read as YAML (`0.1`, `true`, `[64, 64]`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

import metarl_envs
from metarl import config_file
from metarl.config_file import ConfigError, parse_overrides, read_config_file, short_repr

HVP_METHODS = ("finite_difference", "finite_difference_central", "exact")
ALGORITHMS = ("maml", "pretrain", "oracle", "context")


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


def _ray_address(value: str):
    """None (start a local Ray), "auto", or host:port (optionally ray://host:port)."""
    host, sep, port = value.removeprefix("ray://").rpartition(":")
    if value == "auto" or (sep and host and port.isdigit()):
        return None
    return "must be 'auto' or host:port (e.g. 10.0.0.1:6379)"


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


# Limits that make a typo a message at load, not a failure later (README, "Limits"): 32-bit
# seeds; a log-std within +-20 keeps exp(2 log_std) far inside float32's exp(+-88); counts no
# machine runs. Array sizes are checked against memory (metarl.experiment.check_memory).
MAX_SEED = 2**32 - 1
MAX_LOG_STD = 20.0
MAX_THREADS = 1024
MAX_WORKERS = 10_000
MAX_ENVS = 10_000
MAX_TIMEOUT_S = 1e6  # 11.6 days


@dataclass(frozen=True)
class TrainConfig:
    """One experiment. Defaults are the MAML paper's (navigation scale where they differ)."""

    env: str = field(metadata=choices(*metarl_envs.ENV_IDS))
    # maml: the paper's method. pretrain: TRPO on tasks of the whole distribution, no
    # adaptation in training. oracle: TRPO on the env's oracle=True variant (task in the
    # observation). context: MAML-TRPO adapting only a context vector z fed to the policy.
    algorithm: str = field(default="maml", metadata=choices(*ALGORITHMS))
    seed: int = field(default=0, metadata=within(0, MAX_SEED))
    iterations: int = field(default=500, metadata=run_setting(**at_least(1)))  # may grow
    meta_batch_size: int = field(default=20, metadata=at_least(1))
    rollouts_per_task: int = field(default=20, metadata=at_least(1))
    horizon: int | None = field(default=None, metadata=at_least(1))  # None: the env's
    inner_steps: int = field(default=1, metadata=at_least(1))
    inner_lr: float = field(default=0.1, metadata=at_least(0, strict=True))
    first_order: bool = False
    hvp: str = field(default="finite_difference", metadata=choices(*HVP_METHODS))
    hvp_epsilon: float = field(default=1e-3, metadata=at_least(0, strict=True))
    hvp_subsample: float = field(default=1.0, metadata=fraction())
    max_kl: float = field(default=0.01, metadata=at_least(0, strict=True))
    cg_iters: int = field(default=10, metadata=at_least(1))
    cg_damping: float = field(default=1e-5, metadata=at_least(0))
    line_search_ratio: float = field(default=0.8, metadata=fraction(below_one=True))
    line_search_steps: int = field(default=15, metadata=at_least(1))
    gamma: float = field(default=0.99, metadata=fraction())
    gae_lambda: float = field(default=1.0, metadata=within(0, 1))
    normalize_advantages: bool = True
    hidden_sizes: list[int] = field(default_factory=lambda: [100, 100])
    activation: str = field(default="relu", metadata=choices("relu", "tanh"))
    init_log_std: float = field(default=0.0, metadata=within(-MAX_LOG_STD, MAX_LOG_STD))
    sampler: str = field(default="local", metadata=run_setting(**choices("local", "ray")))
    num_envs: int = field(default=400, metadata=run_setting(**within(1, MAX_ENVS)))  # at once
    # sampler: ray (see README, Ray sampler); num_workers 0: one per CPU
    num_workers: int = field(default=0, metadata=run_setting(**within(0, MAX_WORKERS)))
    envs_per_worker: int = field(default=200, metadata=run_setting(**within(1, MAX_ENVS)))
    ray_address: str | None = field(default=None, metadata=run_setting(check=_ray_address))
    ray_dashboard: bool = field(default=False, metadata=run_setting())  # a local Ray's
    worker_timeout_s: float = field(
        default=600.0, metadata=run_setting(**within(0, MAX_TIMEOUT_S, open_low=True))
    )
    max_consecutive_failures: int = field(default=3, metadata=run_setting(**at_least(1)))
    torch_threads: int = field(default=0, metadata=run_setting(**within(0, MAX_THREADS)))  # 0: all
    context_size: int = field(default=4, metadata=at_least(1))  # algorithm: context
    # iterations between checkpoints; 1 (about 3 ms each) loses nothing even when the process
    # is killed from outside (SIGKILL, or Ray ending a driver whose node died)
    checkpoint_every: int = field(default=1, metadata=run_setting(**at_least(1)))
    # evaluation: inner step k uses eval_step_sizes[k] (the last one for further steps)
    eval_step_sizes: list[float] = field(default_factory=lambda: [0.1, 0.05])
    # evaluation of pretrain / random init: the fine-tuning step size is tuned on this grid
    finetune_step_sizes: list[float] = field(
        default_factory=lambda: [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    )

    def __post_init__(self):
        if not self.hidden_sizes or any(size < 1 for size in self.hidden_sizes):
            raise ConfigError(f"key 'hidden_sizes': sizes must be >= 1, got {self.hidden_sizes}")
        if self.ray_address is not None and self.sampler != "ray":
            raise ConfigError(
                f"key 'ray_address' (or --ray-address) is for sampler: ray, not {self.sampler!r}"
                ": add --set sampler=ray, or drop the address"
            )
        for key in ("eval_step_sizes", "finetune_step_sizes"):
            sizes = getattr(self, key)
            if not sizes or any(size <= 0 for size in sizes):
                raise ConfigError(f"key {key!r}: step sizes must be > 0, got {sizes}")


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
                + config_file.text_number_hint(value)
            )
        return number
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"key {key!r}: expected a string, got {short_repr(value)}")
        return value
    raise AssertionError(f"unhandled type {expected} for {key}")


def config_from_dict(values: dict, source: str = "config", cls: type | None = None):
    """Validate a mapping of keys to values and build the config dataclass `cls`.

    Each field's type hint is enforced; `metadata={"choices": ...}` restricts the values
    and `metadata={"check": f}` rejects a value where f(value) returns a reason.
    """
    cls = TrainConfig if cls is None else cls
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    if not isinstance(values, dict):
        raise ConfigError(
            f"{source}: expected a mapping of keys to values, got {type(values).__name__}"
        )
    not_names = [key for key in values if not isinstance(key, str)]
    if not_names:
        raise ConfigError(
            f"{source}: key {short_repr(not_names[0])} is not a name: keys are the config's field "
            "names (text)"
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


def load_config(path: str | Path, overrides: list[str] | None = None, cls: type = None):
    """Read a YAML config, apply `--set` overrides, validate into `cls` (default TrainConfig).

    A relative path in a field marked `path` (e.g. Omniglot's data_path) is read
    relative to the config file's folder, so a config works from any working
    directory; a `--set` path is relative to the working directory, as in a shell.
    """
    cls = TrainConfig if cls is None else cls
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
    return config_from_dict({**values, **override_values}, str(path), cls)


def config_to_yaml(config) -> str:
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
