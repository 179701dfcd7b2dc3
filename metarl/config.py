"""Experiment configuration: a dataclass loaded from YAML, validated before any work starts.

The YAML keys are the field names of `TrainConfig`. An unknown key, a value of
the wrong type, an out-of-range value or an unknown env id raises `ConfigError`
naming the key (and the valid choices where there are some). `--set key=value`
overrides go through the same checks; the value is read as YAML (`0.1`,
`true`, `[64, 64]`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

import metarl_envs

HVP_METHODS = ("finite_difference", "finite_difference_central", "exact")
ALGORITHMS = ("maml", "pretrain", "oracle", "context")


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


def fraction():
    """Field metadata: the value must be in (0, 1]."""
    return {"check": lambda v: None if 0 < v <= 1 else "must be in (0, 1]"}


@dataclass(frozen=True)
class TrainConfig:
    """One experiment. Defaults are the MAML paper's (navigation scale where they differ)."""

    env: str = field(metadata=choices(*metarl_envs.ALL_ENV_IDS))
    # maml: the paper's method. pretrain: TRPO on tasks of the whole distribution, no
    # adaptation in training. oracle: TRPO on the env's oracle=True variant (task in the
    # observation). context: MAML-TRPO adapting only a context vector z fed to the policy.
    algorithm: str = field(default="maml", metadata=choices(*ALGORITHMS))
    seed: int = field(default=0, metadata=at_least(0))
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
    line_search_ratio: float = field(default=0.8, metadata=fraction())
    line_search_steps: int = field(default=15, metadata=at_least(1))
    gamma: float = field(default=0.99, metadata=fraction())
    gae_lambda: float = field(default=1.0, metadata=at_least(0))
    normalize_advantages: bool = True
    hidden_sizes: list[int] = field(default_factory=lambda: [100, 100])
    activation: str = field(default="relu", metadata=choices("relu", "tanh"))
    init_log_std: float = 0.0
    sampler: str = field(default="local", metadata=run_setting(**choices("local", "ray")))
    num_envs: int = field(default=400, metadata=run_setting(**at_least(1)))  # envs stepped at once
    # sampler: ray (see README, Ray sampler)
    num_workers: int = field(default=0, metadata=run_setting(**at_least(0)))  # 0: one per CPU
    envs_per_worker: int = field(default=200, metadata=run_setting(**at_least(1)))
    ray_address: str | None = field(default=None, metadata=run_setting(check=_ray_address))
    # a local Ray's dashboard (a cluster has its own)
    ray_dashboard: bool = field(default=False, metadata=run_setting())
    worker_timeout_s: float = field(default=600.0, metadata=run_setting(**at_least(0, strict=True)))
    max_consecutive_failures: int = field(default=3, metadata=run_setting(**at_least(1)))
    torch_threads: int = field(default=0, metadata=run_setting(**at_least(0)))  # 0: one per core
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
        problem = metarl_envs.missing_extra(self.env)
        if problem:
            raise ConfigError(f"key 'env': {self.env} cannot be made here. {problem}")
        if not self.hidden_sizes or any(size < 1 for size in self.hidden_sizes):
            raise ConfigError(f"key 'hidden_sizes': sizes must be >= 1, got {self.hidden_sizes}")
        for key in ("eval_step_sizes", "finetune_step_sizes"):
            sizes = getattr(self, key)
            if not sizes or any(size <= 0 for size in sizes):
                raise ConfigError(f"key {key!r}: step sizes must be > 0, got {sizes}")


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


def load_config(path: str | Path, overrides: list[str] | None = None, cls: type = None):
    """Read a YAML config, apply `--set` overrides, validate into `cls` (default TrainConfig)."""
    cls = TrainConfig if cls is None else cls
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
    return config_from_dict({**values, **override_values}, str(path), cls)


def config_to_yaml(config) -> str:
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
