"""Many Meta-World envs stepped as one vector env, by the protocol of `metarl_envs.vector`.

ML10's tasks differ by environment class, so a copy cannot keep one env: at each
reset, copy i takes a Meta-World env of its task's class from a pool (made on
first need, reused afterwards), so the pool holds at most as many envs of a class
as one reset used, and at most `num_envs` envs in all (envs of classes a reset does
not need are closed to make room). A reset with a task fixes the episode: Meta-World's reset is
deterministic given the task, so the reset seeds are accepted and not needed.
`info["success"]` holds each copy's success flag of the step (0 where not stepped).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from metarl_envs.meta_world import (
    MetaWorldTaskEnv,
    benchmark_env_names,
    check_horizon,
    check_task,
    make_metaworld_env,
    metaworld_task,
    missing_extra,
)
from metarl_envs.vector import EpisodeTracker, reset_arguments


class MetaWorldVectorEnv(VectorEnv):
    """`num_envs` Meta-World copies, each given its task (and its env class) at reset."""

    metadata = {"autoreset_mode": AutoresetMode.DISABLED}

    def __init__(
        self,
        num_envs: int,
        max_episode_steps: int,
        benchmark: str,
        env_name: str | None = None,
        oracle: bool = False,
    ):
        problem = missing_extra()
        if problem:
            raise ImportError(problem)
        if oracle:
            MetaWorldTaskEnv(benchmark, env_name, oracle=True)  # raises the explanation
        check_horizon(max_episode_steps)
        self.num_envs = num_envs
        self.benchmark, self.env_name = benchmark, env_name
        self.single_observation_space = spaces.Box(-np.inf, np.inf, (39,), np.float64)
        self.single_action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.tracker = EpisodeTracker(num_envs, max_episode_steps)
        self._env_names = benchmark_env_names(benchmark, env_name)
        self._pool: dict[str, list] = {}
        self._envs: list = [None] * num_envs
        self._observations = np.zeros((num_envs, 39))

    def reset(self, *, seed=None, options=None):
        tasks, seeds = reset_arguments(self.num_envs, seed, options)
        if tasks is None:
            raise ValueError("Meta-World copies need their tasks: reset(options={'tasks': ...})")
        for task in tasks:
            check_task(task, self._env_names)
        self._trim_pool(Counter(task["env"] for task in tasks))
        taken: dict[str, int] = {}
        self._envs = [None] * self.num_envs
        for i, task in enumerate(tasks):
            pool = self._pool.setdefault(task["env"], [])
            position = taken.get(task["env"], 0)
            taken[task["env"]] = position + 1
            if position == len(pool):
                pool.append(make_metaworld_env(task["env"]))
            env = pool[position]
            env.set_task(metaworld_task(task))
            self._observations[i], _ = env.reset()
            self._envs[i] = env
        self._observations[len(tasks) :] = 0.0
        self.tracker.start(len(seeds))
        return self._observations.copy(), {}

    @property
    def pool_sizes(self) -> dict[str, int]:
        """How many Meta-World envs of each class this vector env holds."""
        return {name: len(pool) for name, pool in self._pool.items()}

    def _trim_pool(self, needed: Counter) -> None:
        """Close envs this reset does not need while the pool would exceed `num_envs` envs."""
        missing = sum(max(0, n - len(self._pool.get(name, []))) for name, n in needed.items())
        surplus = sum(len(pool) for pool in self._pool.values()) + missing - self.num_envs
        for name, pool in self._pool.items():
            while surplus > 0 and len(pool) > needed.get(name, 0):
                pool.pop().close()
                surplus -= 1

    def step(self, actions):
        rewards = np.zeros(self.num_envs)
        success = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, dtype=bool)
        running = np.flatnonzero(self.tracker.running)
        actions = np.asarray(actions, dtype=np.float32)
        for i in running:
            observation, reward, done, _, info = self._envs[i].step(actions[i])
            self._observations[i] = observation
            rewards[i], terminated[i] = reward, done
            success[i] = float(info["success"])
        self.tracker.record(self.tracker.running, terminated)
        t = self.tracker
        info = {"success": success}
        return self._observations.copy(), rewards, t.terminated.copy(), t.truncated.copy(), info

    def close_extras(self, **kwargs):
        for pool in self._pool.values():
            for env in pool:
                env.close()
        self._pool.clear()


def metaworld_vector_env(num_envs: int, max_episode_steps: int, **kwargs) -> MetaWorldVectorEnv:
    return MetaWorldVectorEnv(num_envs, max_episode_steps, **kwargs)
