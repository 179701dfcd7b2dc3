"""Small configs and helpers shared by the tests (pytest puts this folder on sys.path)."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from metarl.config import TrainConfig
from metarl.config_validation import config_from_dict
from metarl.episodes import MetaBatch
from metarl.metrics import read_rows

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def load_benchmark(name: str):
    """Import benchmarks/NAME.py as module NAME, with benchmarks/ first on sys.path as for
    the scripts (their own imports), and registered by name (dataclasses and sibling
    imports look it up there)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# the device tests' markers: GPU-only checks, and the refusals of a machine without CUDA
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="tests the refusal without CUDA")

TIMING_COLUMNS = {"wall_s", "env_steps_per_s"}  # every *_s column is a duration too


def small_navigation_config(**changes) -> TrainConfig:
    """A Navigation2D run that takes a fraction of a second per iteration."""
    values = dict(
        env="metarl/Navigation2D-v0",
        seed=3,
        iterations=2,
        meta_batch_size=4,
        rollouts_per_task=5,
        horizon=20,
        hidden_sizes=[16, 16],
        activation="tanh",
        torch_threads=1,
    )
    values.update(changes)
    return config_from_dict(TrainConfig, values)


def checkpointed_navigation_config(**changes) -> TrainConfig:
    """small_navigation_config with seed 5, 4 iterations and a checkpoint every 2."""
    return small_navigation_config(**{**dict(seed=5, iterations=4, checkpoint_every=2), **changes})


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of a run's metrics.csv."""
    with open(run_dir / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def without_timings(rows: list[dict]) -> list[dict]:
    """The rows without their durations, which differ between runs that are otherwise equal."""
    return [
        {k: v for k, v in row.items() if k not in TIMING_COLUMNS and not k.endswith("_s")}
        for row in rows
    ]


def metrics_without_timings(run_dir: Path) -> list[dict]:
    """The rows of a run's metrics.csv without their durations."""
    with open(run_dir / "metrics.csv", newline="") as handle:
        return without_timings(list(csv.DictReader(handle)))


def assert_meta_batches_equal(a: MetaBatch, b: MetaBatch) -> None:
    """Bitwise equal rollouts, advantages and reward terms in every phase."""
    for left, right in zip(a.phases, b.phases, strict=True):
        for field in ("observations", "actions", "rewards", "mask", "advantages", "task_ids"):
            assert torch.equal(getattr(left, field), getattr(right, field)), field
        assert torch.equal(left.explained_variance, right.explained_variance)
        for term in left.reward_terms:
            assert torch.equal(left.reward_terms[term], right.reward_terms[term]), term


def wait_for_rows(run: subprocess.Popen, run_dir: Path, rows: int, timeout: float = 90) -> None:
    """Until the run `run` (a `metarl train` process) has logged `rows` rows of metrics.csv."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.poll() is None:
        metrics = run_dir / "metrics.csv"
        if metrics.exists() and len(read_rows(metrics)[1]) >= rows:
            return
        time.sleep(0.02)
    raise AssertionError(f"no {rows} rows within {timeout} s: {run.communicate()}")


# a Navigation2D meta-batch small enough for a benchmark's numbers to be checked in seconds
TINY_NAVIGATION = [
    "meta_batch_size=4",
    "rollouts_per_task=2",
    "horizon=20",
    "hidden_sizes=[8,8]",
    "num_envs=8",
]
