"""Small configs and helpers shared by the tests (pytest puts this folder on sys.path)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from metarl.config import TrainConfig
from metarl.config_validation import config_from_dict
from metarl.metrics import read_rows


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


def wait_for_rows(run: subprocess.Popen, run_dir: Path, rows: int, timeout: float = 90) -> None:
    """Until the run `run` (a `metarl train` process) has logged `rows` rows of metrics.csv."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.poll() is None:
        metrics = run_dir / "metrics.csv"
        if metrics.exists() and len(read_rows(metrics)[1]) >= rows:
            return
        time.sleep(0.02)
    raise AssertionError(f"no {rows} rows within {timeout} s: {run.communicate()}")
