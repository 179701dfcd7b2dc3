"""Rollouts of a batch of tasks in a vector env: all envs step together.

Every rollout has its own seed, derived from (run seed, stream, iteration, task id,
phase, rollout index): the env is reset with it and the action noise
a = mean + std * eps draws eps from a generator of its own. The actions of a
task's R rollouts come from one policy call on that task's [R, obs] block, on
one thread, and each task's advantages are computed alone. A task's computation
then has the same shapes and the same kernels whatever the other tasks of the
batch, so its rollouts are bitwise the same however many envs step at once, and
whichever process (local or a Ray actor) sampled them. One call for all tasks
would be faster but is not invariant: a task's slice of a batch starts at a
batch-dependent memory alignment, a single task folds into a plain mm instead of
a bmm, and vectorized tanh/exp take a scalar path on a tensor's tail; each
changed the last bit of actions (measured while writing the sampler tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from metarl.episodes import Rollouts
from metarl.policies import Params, gaussian_mlp
from metarl.runtime import torch_threads
from metarl.value_baseline import estimate_advantages

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


@dataclass(frozen=True)
class AdvantageSettings:
    gamma: float
    gae_lambda: float
    normalize: bool


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

    def __call__(self, observations: np.ndarray, t: int) -> torch.Tensor:
        """Actions [R, a] for this task's observations [R, d] at time step t."""
        obs = torch.from_numpy(observations).clone()
        mean, _ = gaussian_mlp(self.params, obs, self.activation)
        return mean + self.scaled_noise[:, t]


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
    advantage: AdvantageSettings,
    on_wave: Callable[[int, int], None] | None = None,
) -> Rollouts:
    """R rollouts of each task (of the shared or per-task stacked `params`), with advantages.

    `on_wave(env_steps, rollouts)` is called after each wave of tasks stepped together
    with what that wave sampled (for progress displays; it sees no data).
    """
    # per-task calls are small; one thread makes them thread-invariant
    with torch_threads(1), torch.no_grad():
        return _rollout(
            vector_env,
            policy,
            params,
            tasks,
            task_ids,
            rollouts_per_task,
            horizon,
            key,
            advantage,
            on_wave,
        )


def _rollout(
    vector_env, policy, params, tasks, task_ids, rollouts_per_task, horizon, key, advantage, on_wave
):
    num_tasks, per_task = len(tasks), rollouts_per_task
    tasks_per_wave = vector_env.num_envs // per_task
    if tasks_per_wave < 1:
        raise ValueError(f"{vector_env.num_envs} envs cannot hold {per_task} rollouts of a task")
    obs_dim = vector_env.single_observation_space.shape[0]
    act_dim = vector_env.single_action_space.shape[0]
    # torch's own (aligned) memory, written through numpy views
    observations = torch.zeros((num_tasks, per_task, horizon, obs_dim))
    actions = torch.zeros((num_tasks, per_task, horizon, act_dim))
    rewards = torch.zeros((num_tasks, per_task, horizon))
    mask = torch.zeros((num_tasks, per_task, horizon))
    obs_view, act_view, rew_view, mask_view = (
        t.numpy() for t in (observations, actions, rewards, mask)
    )
    term_sums: dict[str, np.ndarray] = {}

    for start in range(0, num_tasks, tasks_per_wave):
        stop = min(start + tasks_per_wave, num_tasks)
        wave, count = slice(start, stop), (stop - start) * per_task
        seeds = [
            rollout_seed(key.run_seed, key.stream, key.iteration, int(task_ids[t]), key.phase, r)
            for t in range(start, stop)
            for r in range(per_task)
        ]
        noise = np.stack(
            [
                np.random.default_rng(s).standard_normal((horizon, act_dim), np.float32)
                for s in seeds
            ]
        ).reshape(stop - start, per_task, horizon, act_dim)
        env_seeds = [int(s.generate_state(1)[0]) for s in seeds]
        wave_tasks = [tasks[t] for t in range(start, stop) for _ in range(per_task)]
        obs, _ = vector_env.reset(seed=env_seeds, options={"tasks": wave_tasks})
        task_actions = [
            TaskActions(policy, task_params(policy, params, t), noise[t - start])
            for t in range(start, stop)
        ]
        running = np.ones(count, dtype=bool)
        step_actions = np.zeros((vector_env.num_envs, act_dim), np.float32)
        for t in range(horizon):
            obs_batch = obs[:count].astype(np.float32).reshape(stop - start, per_task, obs_dim)
            obs_view[wave, :, t] = obs_batch
            mask_view[wave, :, t] = running.reshape(stop - start, per_task)
            for j, act in enumerate(task_actions):
                action = act(obs_batch[j], t)
                act_view[start + j, :, t] = action
                step_actions[j * per_task : (j + 1) * per_task] = action
            obs, reward, terminated, truncated, info = vector_env.step(step_actions)
            rew_view[wave, :, t] = np.where(running, reward[:count], 0.0).reshape(
                stop - start, per_task
            )
            for name, values in info.items():
                if name.startswith("reward_"):
                    sums = term_sums.setdefault(name, np.zeros((num_tasks, per_task)))
                    sums[wave] += np.where(running, values[:count], 0.0).reshape(
                        stop - start, per_task
                    )
            running &= ~(terminated[:count] | truncated[:count])
            if not running.any():
                break
        if on_wave is not None:
            on_wave(int(mask_view[wave].sum()), count)
    observations *= mask[..., None]
    actions *= mask[..., None]
    advantages, explained = per_task_advantages(observations, rewards, mask, advantage)
    return Rollouts(
        observations,
        actions,
        rewards,
        mask,
        advantages,
        torch.as_tensor(np.asarray(task_ids), dtype=torch.int64),
        {name: torch.from_numpy(sums) for name, sums in term_sums.items()},
        explained,
    )


def per_task_advantages(
    observations: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor, s: AdvantageSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages [T, R, H] and explained variance [T], each task computed alone."""
    advantages, explained = [], []
    for task in range(mask.shape[0]):
        one = (observations[task : task + 1].clone(), rewards[task : task + 1].clone())
        values, ev = estimate_advantages(
            *one, mask[task : task + 1].clone(), s.gamma, s.gae_lambda, s.normalize
        )
        advantages.append(values.to(torch.float32))
        explained.append(ev)
    return torch.cat(advantages), torch.cat(explained)
