"""Vectorized task envs for samplers: many copies, each with its own task, no autoreset.

`gymnasium.make_vec(env_id, num_envs, vectorization_mode="vector_entry_point")`
builds one of these for every metarl id. The protocol, shared by
`TaskVectorEnv` (a list of MuJoCo envs stepped in turn) and
`Navigation2DVectorEnv` (all points stepped at once in numpy):

- `reset(seed=[s_0, ...], options={"tasks": [task_0, ...]})` sets copy i's task,
  resets it with seed s_i and returns the stacked observations. Fewer tasks than
  copies leave the remaining copies idle until the next reset.
- `step(actions)` steps every copy whose episode is still running. A copy whose
  episode ended (terminated, or `max_episode_steps` reached) or that is idle is
  not stepped: it repeats its last observation with reward 0 and its final
  terminated/truncated flags, until the next reset. `info` holds one array per
  reward term (`reward_forward`, `reward_ctrl`, ...: 0 where not stepped), whose
  sum is the reward.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from metarl_envs.physics_threads import PhysicsThreads


class EpisodeTracker:
    """Which copies are running, and for how many steps; shared by the vector envs."""

    def __init__(self, num_envs: int, max_episode_steps: int):
        self.max_episode_steps = int(max_episode_steps)
        self.elapsed = np.zeros(num_envs, dtype=np.int64)
        self.terminated = np.ones(num_envs, dtype=bool)  # idle until reset
        self.truncated = np.zeros(num_envs, dtype=bool)

    @property
    def running(self) -> np.ndarray:
        return ~(self.terminated | self.truncated)

    def start(self, active: int) -> None:
        self.elapsed[:] = 0
        self.terminated[:] = False
        self.terminated[active:] = True
        self.truncated[:] = False

    def record(self, stepped: np.ndarray, terminated: np.ndarray) -> None:
        self.elapsed[stepped] += 1
        self.terminated[stepped] = terminated[stepped]
        self.truncated[stepped] = ~terminated[stepped] & (
            self.elapsed[stepped] >= self.max_episode_steps
        )


def reset_arguments(num_envs: int, seed, options) -> tuple[list[dict] | None, list]:
    """(tasks or None, one seed per active copy) from `reset`'s arguments."""
    tasks = None if options is None else options.get("tasks")
    active = num_envs if tasks is None else len(tasks)
    if active > num_envs:
        raise ValueError(f"{active} tasks for {num_envs} envs")
    if seed is None or isinstance(seed, int | np.integer):
        seeds = [None if seed is None else int(seed) + i for i in range(active)]
    else:
        seeds = list(seed)
        if len(seeds) != active:
            raise ValueError(f"got {len(seeds)} seeds for {active} active envs")
    return tasks, seeds


class TaskVectorEnv(VectorEnv):
    """`num_envs` copies of a MuJoCo task env (from `make_env`), stepped as one batch.

    The copies share one MjModel (built by the first; `make_env(physics_model=...)`
    for the others), which MuJoCo only reads while stepping; each has its own MjData
    and task. A step is the env class's `step_batch` on the running copies: their
    physics in turn (or side by side over `physics_threads` threads, with the same
    numbers), then observations and rewards for all of them at once.
    """

    metadata = {"autoreset_mode": AutoresetMode.DISABLED}

    def __init__(
        self,
        make_env: Callable[..., gym.Env],
        num_envs: int,
        max_episode_steps: int,
        physics_threads: int = 1,
    ):
        self.threads = PhysicsThreads(physics_threads)
        first = make_env()
        self.envs = [first] + [make_env(physics_model=first.model) for _ in range(num_envs - 1)]
        self.num_envs = num_envs
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.tracker = EpisodeTracker(num_envs, max_episode_steps)
        self._observations = np.zeros(
            (num_envs, *self.single_observation_space.shape), self.single_observation_space.dtype
        )

    def reset(self, *, seed=None, options=None):
        tasks, seeds = reset_arguments(self.num_envs, seed, options)
        for i, env_seed in enumerate(seeds):
            if tasks is not None:
                self.envs[i].set_task(tasks[i])
            self._observations[i], _ = self.envs[i].reset(seed=env_seed)
        self.tracker.start(len(seeds))
        return self._observations.copy(), {}

    def step(self, actions):
        rewards = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, dtype=bool)
        running = np.flatnonzero(self.tracker.running)
        info = {}
        if len(running):
            envs = [self.envs[i] for i in running]
            observations, stepped_rewards, stepped_terminated, terms = envs[0].step_batch(
                envs, np.asarray(actions)[running], self.threads
            )
            self._observations[running] = observations
            rewards[running] = stepped_rewards
            terminated[running] = stepped_terminated
            for key, values in terms.items():
                if key.startswith("reward_"):
                    info[key] = np.zeros(self.num_envs)
                    info[key][running] = values
        self.tracker.record(self.tracker.running, terminated)
        t = self.tracker
        return self._observations.copy(), rewards, t.terminated.copy(), t.truncated.copy(), info

    def close_extras(self, **kwargs):
        self.threads.close()
        for env in self.envs:
            env.close()


def half_cheetah_vector_env(
    num_envs: int, max_episode_steps: int, physics_threads: int = 1, **kwargs
) -> TaskVectorEnv:
    from metarl_envs.locomotion import HalfCheetahTaskEnv

    return TaskVectorEnv(
        lambda **shared: HalfCheetahTaskEnv(**kwargs, **shared),
        num_envs,
        max_episode_steps,
        physics_threads,
    )


def ant_vector_env(
    num_envs: int, max_episode_steps: int, physics_threads: int = 1, **kwargs
) -> TaskVectorEnv:
    from metarl_envs.locomotion import AntTaskEnv

    return TaskVectorEnv(
        lambda **shared: AntTaskEnv(**kwargs, **shared),
        num_envs,
        max_episode_steps,
        physics_threads,
    )
