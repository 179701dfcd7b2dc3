"""Task families: how tasks are sampled, validated, scored and shown to an oracle.

A task is a plain picklable dict. Each family knows its single key, its default
task (used when an env is stepped before `set_task`), how to draw tasks from a
numpy generator, the forward reward it defines, and the features an oracle
policy sees appended to its observation.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces


def _check_keys(task: object, key: str) -> None:
    if not isinstance(task, dict):
        raise ValueError(f"task must be a dict with key {key!r}, got {type(task).__name__}")
    if key not in task:
        raise ValueError(f"task is missing key {key!r} (got keys {sorted(task)})")
    unknown = sorted(set(task) - {key})
    if unknown:
        raise ValueError(f"task has unknown key(s) {unknown}; the only key is {key!r}")


def _finite_float(value: object, key: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"task key {key!r} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"task key {key!r} must be finite, got {value!r}")
    return number


@dataclass(frozen=True)
class GoalVelocity:
    """Run at a goal forward velocity drawn uniformly from [low, high]."""

    low: float
    high: float
    default: float
    key = "velocity"
    num_features = 1

    def sample(self, rng: np.random.Generator, n: int) -> list[dict]:
        return [{"velocity": float(v)} for v in rng.uniform(self.low, self.high, size=n)]

    def validate(self, task: object) -> dict:
        _check_keys(task, self.key)
        return {"velocity": _finite_float(task["velocity"], "velocity")}  # type: ignore[index]

    def default_task(self) -> dict:
        return {"velocity": self.default}

    def forward_reward(self, goals: np.ndarray, x_velocity: np.ndarray) -> np.ndarray:
        """-|v - goal| for arrays of goal velocities and x velocities."""
        return -np.abs(x_velocity - goals)

    def goal(self, task: dict) -> float:
        return task["velocity"]

    def features(self, task: dict) -> np.ndarray:
        return np.array([task["velocity"]])

    def feature_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([self.low]), np.array([self.high])


@dataclass(frozen=True)
class GoalDirection:
    """Run forward (+1) or backward (-1), each with probability 1/2."""

    default: int = 1
    key = "direction"
    num_features = 1

    def sample(self, rng: np.random.Generator, n: int) -> list[dict]:
        return [{"direction": int(d)} for d in rng.choice([-1, 1], size=n)]

    def validate(self, task: object) -> dict:
        _check_keys(task, self.key)
        value = task["direction"]  # type: ignore[index]
        if isinstance(value, bool) or value not in (-1, 1):
            raise ValueError(f"task key 'direction' must be -1 or 1, got {value!r}")
        return {"direction": int(value)}

    def default_task(self) -> dict:
        return {"direction": self.default}

    def forward_reward(self, goals: np.ndarray, x_velocity: np.ndarray) -> np.ndarray:
        """direction * v for arrays of directions and x velocities."""
        return goals * x_velocity

    def goal(self, task: dict) -> float:
        return float(task["direction"])

    def features(self, task: dict) -> np.ndarray:
        return np.array([float(task["direction"])])

    def feature_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([-1.0]), np.array([1.0])


@dataclass(frozen=True)
class GoalPosition:
    """Reach a goal drawn uniformly from the square [low, high]^2."""

    low: float
    high: float
    default: tuple[float, float]
    key = "goal"
    num_features = 2

    def sample(self, rng: np.random.Generator, n: int) -> list[dict]:
        goals = rng.uniform(self.low, self.high, size=(n, 2))
        return [{"goal": [float(x), float(y)]} for x, y in goals]

    def validate(self, task: object) -> dict:
        _check_keys(task, self.key)
        goal = task["goal"]  # type: ignore[index]
        if isinstance(goal, str | bytes) or np.shape(goal) != (2,):
            raise ValueError(f"task key 'goal' must be a pair [x, y], got {goal!r}")
        return {"goal": [_finite_float(goal[0], "goal"), _finite_float(goal[1], "goal")]}

    def default_task(self) -> dict:
        return {"goal": list(self.default)}

    def features(self, task: dict) -> np.ndarray:
        return np.asarray(task["goal"], dtype=np.float64)

    def feature_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.full(2, self.low), np.full(2, self.high)


TaskFamily = GoalVelocity | GoalDirection | GoalPosition


class TaskEnvMixin:
    """The task API shared by every metarl env: `sample_tasks`, `set_task`, `get_task`.

    The env sets `task_family` and `oracle` in its constructor, calls
    `_init_task_api(observation_space)` once its base observation space exists,
    and passes each observation through `_with_task_features`.
    """

    task_family: TaskFamily
    oracle: bool

    def _init_task_api(self, base_space: spaces.Box) -> spaces.Box:
        self._task = self.task_family.default_task()
        if not self.oracle:
            return base_space
        low, high = self.task_family.feature_bounds()
        return spaces.Box(
            low=np.concatenate([base_space.low, low]).astype(base_space.dtype),
            high=np.concatenate([base_space.high, high]).astype(base_space.dtype),
            dtype=base_space.dtype,
        )

    def sample_tasks(self, n: int, split: str = "train") -> list[dict]:
        """Draw `n` tasks from the env's generator (seeded by `reset(seed=...)`).

        The paper's distributions have no separate test set: both splits draw from
        the one distribution (held-out tasks come from their own seed stream).
        """
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"number of tasks must be a non-negative integer, got {n!r}")
        return self.task_family.sample(self.np_random, int(n))

    def set_task(self, task: dict) -> None:
        """Make `task` the current task; raises ValueError naming a bad key."""
        self._task = self.task_family.validate(task)

    def get_task(self) -> dict:
        return copy.deepcopy(self._task)

    def _with_task_features(self, observation: np.ndarray) -> np.ndarray:
        if not self.oracle:
            return observation
        features = self.task_family.features(self._task)
        return np.concatenate([observation, features]).astype(observation.dtype)
