"""2D point navigation (MAML paper, section 5.3).

A point starts at the origin and must reach a goal drawn uniformly from the
unit square [-0.5, 0.5]^2. The observation is the position, the action a
velocity clipped to [-0.1, 0.1] per axis, the reward minus the squared
distance to the goal after the move; the episode terminates within 0.01 of
the goal (and is truncated at the horizon of 100 steps by the registration).

The dynamics are written for a batch of points (`navigation_step`), so a
sampler can step thousands of points at once in numpy; the env is that
function applied to a batch of one, and `Navigation2DVectorEnv` steps many points.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from metarl_envs.tasks import GoalPosition, TaskEnvMixin
from metarl_envs.vector import EpisodeTracker, reset_arguments

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


class Navigation2DVectorEnv(VectorEnv):
    """`num_envs` points navigating at once in numpy (the protocol of `metarl_envs.vector`)."""

    metadata = {"autoreset_mode": AutoresetMode.DISABLED}

    def __init__(self, num_envs: int, max_episode_steps: int = 100, oracle: bool = False):
        single = Navigation2DEnv(oracle=oracle)
        self.num_envs, self.oracle = num_envs, bool(oracle)
        self.single_observation_space = single.observation_space
        self.single_action_space = single.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.tracker = EpisodeTracker(num_envs, max_episode_steps)
        self.positions = np.zeros((num_envs, 2))
        self.goals = np.tile(NAVIGATION_TASKS.default, (num_envs, 1)).astype(np.float64)

    def _observations(self) -> np.ndarray:
        if self.oracle:
            return np.concatenate([self.positions, self.goals], axis=1)
        return self.positions.copy()

    def reset(self, *, seed=None, options=None):
        tasks, seeds = reset_arguments(self.num_envs, seed, options)
        if tasks is not None:
            goals = [NAVIGATION_TASKS.validate(task)["goal"] for task in tasks]
            self.goals[: len(goals)] = goals
        self.positions[:] = 0.0  # the start is the origin: no randomness to seed
        self.tracker.start(len(seeds))
        return self._observations(), {}

    def step(self, actions):
        running = self.tracker.running
        actions = np.asarray(actions, dtype=np.float64)
        moved, rewards, terminated, _ = navigation_step(self.positions, self.goals, actions)
        self.positions[running] = moved[running]
        rewards = np.where(running, rewards, 0.0)
        self.tracker.record(running, terminated)
        t = self.tracker
        info = {"reward_distance": rewards}
        return self._observations(), rewards, t.terminated.copy(), t.truncated.copy(), info
