"""Rollouts of a batch of tasks in a vector env, one batched policy forward per time step.

Every rollout has its own seed, derived from (run seed, stream, iteration, task id,
phase, rollout index): the env is reset with it and the action noise
a = mean + std * eps draws eps from a generator of its own. The forward pass runs
on [tasks, rollouts, obs] arrays, whose per-task results do not depend on how
many tasks share the call. So a rollout is the same whatever the batch it was
sampled in, and whichever process sampled it.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from metarl.episodes import Episodes
from metarl.policies import Params, policy_outputs

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


def take_tasks(policy: nn.Module, params: Params, positions: np.ndarray) -> Params:
    """The rows `positions` of per-task stacked parameters; shared ones pass through."""
    shapes = dict(policy.named_parameters())
    return {
        name: p[torch.from_numpy(positions)] if p.dim() > shapes[name].dim() else p
        for name, p in params.items()
    }


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
        wave_params = take_tasks(policy, params, wave)
        count = len(wave) * per_task
        running = np.ones(count, dtype=bool)
        for t in range(horizon):
            obs_batch = obs[:count].astype(np.float32).reshape(len(wave), per_task, obs_dim)
            with torch.no_grad():
                mean, log_std = policy_outputs(policy, wave_params, torch.from_numpy(obs_batch))
                action = (mean + log_std.exp() * torch.from_numpy(noise[:, :, t])).numpy()
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
