"""Rollouts of a batch of tasks in a vector env: all envs step together.

Every rollout has its own seed, derived from (run seed, stream, iteration, task id,
phase, rollout index): the env is reset with it and the action noise
a = mean + std * eps draws eps from a generator of its own. The actions of a
task's R rollouts come from one policy call on that task's [1, R, obs] block, on
one thread. A task's computation then has the same shapes and the same kernels
whatever the other tasks of the batch, so its rollouts are bitwise the same
however many envs step at once, and whichever process (local or a Ray actor)
sampled them. One call for all tasks would be faster but is not invariant: a
task's slice of a batch starts at a batch-dependent memory alignment, a single
task folds into a plain mm instead of a bmm, and vectorized tanh/exp take a
scalar path on a tensor's tail; each changed the last bit of actions (measured
while writing the sampler tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from metarl.episodes import Episodes
from metarl.policies import Params, gaussian_mlp
from metarl.runtime import torch_threads

TRAINING_STREAM = 0  # rollouts of meta-training
EVALUATION_STREAM = 1  # rollouts of evaluation on held-out tasks


def rollout_seed(
    run_seed: int, stream: int, iteration: int, task_id: int, phase: int, rollout: int
) -> np.random.SeedSequence:
    return np.random.SeedSequence(
        entropy=run_seed, spawn_key=(stream, iteration, task_id, phase, rollout)
    )


@dataclass(frozen=True)
class RolloutKey:
    """Where a batch of rollouts sits in a run, for their seeds."""

    run_seed: int
    stream: int
    iteration: int
    phase: int  # inner step k (rollouts of theta'_k) or inner_steps (validation)


def task_params(policy: nn.Module, params: Params, position: int) -> Params:
    """Task `position`'s parameters as a stack of one [1, ...]; shared ones are expanded."""
    shapes = dict(policy.named_parameters())
    return {
        name: p[position : position + 1] if p.dim() > shapes[name].dim() else p.unsqueeze(0)
        for name, p in params.items()
    }


class TaskActions:
    """Actions of one task's R rollouts: a = mean(s) + std * eps, eps fixed per rollout.

    Everything is computed on this task's own freshly allocated (64-byte aligned)
    tensors with the same shapes for every task, so the same kernels see the same
    data whatever else is sampled beside it: kernels take different paths for
    differently aligned memory, and a slice of a batch can start anywhere.
    """

    def __init__(self, policy: nn.Module, params: Params, noise: np.ndarray):
        self.activation = policy.activation
        self.params = {name: p[0].contiguous() for name, p in params.items()}  # drop the [1]
        std = self.params["log_std"].exp()
        self.scaled_noise = torch.from_numpy(noise).clone() * std  # [R, H, a]

    def __call__(self, observations: np.ndarray, t: int) -> np.ndarray:
        """Actions [R, a] for this task's observations [R, d] at time step t."""
        obs = torch.from_numpy(observations).clone()
        mean, _ = gaussian_mlp(self.params, obs, self.activation)
        return (mean + self.scaled_noise[:, t]).numpy()


def make_vector_env(env_id: str, num_envs: int, horizon: int, env_kwargs: dict | None = None):
    """`num_envs` copies of `env_id` (see metarl_envs.vector) whose episodes end at `horizon`."""
    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        max_episode_steps=horizon,
        **(env_kwargs or {}),
    )


def rollout(
    vector_env,
    policy: nn.Module,
    params: Params,
    tasks: list[dict],
    task_ids: np.ndarray,
    rollouts_per_task: int,
    horizon: int,
    key: RolloutKey,
) -> Episodes:
    """R rollouts of each task (of the shared or per-task stacked `params`) as padded Episodes."""
    # per-task calls are small; one thread makes them thread-invariant
    with torch_threads(1), torch.no_grad():
        return _rollout(
            vector_env, policy, params, tasks, task_ids, rollouts_per_task, horizon, key
        )


def _rollout(vector_env, policy, params, tasks, task_ids, rollouts_per_task, horizon, key):
    num_tasks, per_task = len(tasks), rollouts_per_task
    tasks_per_wave = vector_env.num_envs // per_task
    if tasks_per_wave < 1:
        raise ValueError(f"{vector_env.num_envs} envs cannot hold {per_task} rollouts of a task")
    obs_dim = vector_env.single_observation_space.shape[0]
    act_dim = vector_env.single_action_space.shape[0]
    observations = np.zeros((num_tasks, per_task, horizon, obs_dim), np.float32)
    actions = np.zeros((num_tasks, per_task, horizon, act_dim), np.float32)
    rewards = np.zeros((num_tasks, per_task, horizon), np.float32)
    mask = np.zeros((num_tasks, per_task, horizon), np.float32)

    for start in range(0, num_tasks, tasks_per_wave):
        wave = np.arange(start, min(start + tasks_per_wave, num_tasks))
        seeds = [
            rollout_seed(key.run_seed, key.stream, key.iteration, int(task_ids[t]), key.phase, r)
            for t in wave
            for r in range(per_task)
        ]
        noise = np.stack(
            [
                np.random.default_rng(s).standard_normal((horizon, act_dim), np.float32)
                for s in seeds
            ]
        ).reshape(len(wave), per_task, horizon, act_dim)
        env_seeds = [int(s.generate_state(1)[0]) for s in seeds]
        wave_tasks = [tasks[t] for t in wave for _ in range(per_task)]
        obs, _ = vector_env.reset(seed=env_seeds, options={"tasks": wave_tasks})
        task_actions = [
            TaskActions(policy, task_params(policy, params, int(t)), noise[j])
            for j, t in enumerate(wave)
        ]
        count = len(wave) * per_task
        running = np.ones(count, dtype=bool)
        for t in range(horizon):
            obs_batch = obs[:count].astype(np.float32).reshape(len(wave), per_task, obs_dim)
            action = np.stack([act(obs_batch[j], t) for j, act in enumerate(task_actions)])
            observations[wave, :, t] = obs_batch
            actions[wave, :, t] = action
            mask[wave, :, t] = running.reshape(len(wave), per_task)
            step_actions = np.zeros((vector_env.num_envs, act_dim), np.float32)
            step_actions[:count] = action.reshape(count, act_dim)
            obs, reward, terminated, truncated, _ = vector_env.step(step_actions)
            rewards[wave, :, t] = np.where(running, reward[:count], 0.0).reshape(
                len(wave), per_task
            )
            running &= ~(terminated[:count] | truncated[:count])
            if not running.any():
                break
    observations *= mask[..., None]
    actions *= mask[..., None]
    return Episodes(observations, actions, rewards, mask, np.asarray(task_ids, dtype=np.int64))
