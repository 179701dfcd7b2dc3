"""2D point navigation (MAML paper, section 5.3).

A point starts at the origin and must reach a goal drawn uniformly from the
unit square [-0.5, 0.5]^2. The observation is the position, the action a
velocity clipped to [-0.1, 0.1] per axis, the reward minus the squared
distance to the goal after the move; the episode terminates within 0.01 of
the goal (and is truncated at the horizon of 100 steps by the registration).

The dynamics are written for a batch of points (`navigation_step`), so a
sampler can step thousands of points at once in numpy; the env is that
function applied to a batch of one.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from metarl_envs.tasks import GoalPosition, TaskEnvMixin

MAX_SPEED = 0.1
GOAL_RADIUS = 0.01
NAVIGATION_TASKS = GoalPosition(low=-0.5, high=0.5, default=(0.5, 0.5))


def navigation_step(
    positions: np.ndarray, goals: np.ndarray, actions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Move a batch of points; returns (new positions, rewards, terminated, clipped actions).

    All arrays have a leading batch axis; positions, goals and actions are (n, 2).
    """
    clipped = np.clip(actions, -MAX_SPEED, MAX_SPEED)
    new_positions = positions + clipped
    squared_distance = np.sum(np.square(new_positions - goals), axis=-1)
    terminated = squared_distance < GOAL_RADIUS**2
    return new_positions, -squared_distance, terminated, clipped


class Navigation2DEnv(TaskEnvMixin, gym.Env):
    """Point-mass navigation to a goal; task `{"goal": [x, y]}`.

    Default task (before `set_task`): goal [0.5, 0.5], a corner of the square.
    `oracle=True` appends the goal to the observation.
    """

    metadata = {"render_modes": []}

    def __init__(self, oracle: bool = False):
        self.task_family = NAVIGATION_TASKS
        self.oracle = bool(oracle)
        self.action_space = spaces.Box(-MAX_SPEED, MAX_SPEED, shape=(2,), dtype=np.float32)
        position_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float64)
        self.observation_space = self._init_task_api(position_space)
        self._position = np.zeros(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._position = np.zeros(2)
        return self._with_task_features(self._position.copy()), {}

    def step(self, action):
        action = np.asarray(action, dtype=np.float64).reshape(2)
        goal = np.asarray(self._task["goal"])
        positions, rewards, terminated, clipped = navigation_step(
            self._position[None], goal[None], action[None]
        )
        self._position = positions[0]
        info = {"reward_distance": float(rewards[0]), "action_clipped": clipped[0]}
        observation = self._with_task_features(self._position.copy())
        return observation, float(rewards[0]), bool(terminated[0]), False, info
