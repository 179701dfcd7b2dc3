"""Small configs shared by the tests (pytest puts this folder on sys.path)."""

from __future__ import annotations

from metarl.config import TrainConfig
from metarl.config_validation import config_from_dict


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
