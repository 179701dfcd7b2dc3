"""Rollouts of a batch of tasks in a vector env: all envs step together.

Every rollout has its own seed, derived from (run seed, stream, iteration, task id,
phase, rollout index): the env is reset with it and the action noise
a = mean + std * eps draws eps from a generator of its own.

The actions of all tasks stepped at once (a wave) come from one policy call per
time step, and a task's actions must not depend on the other tasks beside it, or
rollouts would change with the number of envs, workers and chunks. Each layer is
one `torch.baddbmm` over a per-task stack: task j's [R, in] block times its own
[in, out] weights. A plain 2D matmul is not invariant (a row's result changes
with the number of rows), nor is baddbmm on arbitrary shapes (some small shapes
changed with the batch size: measured). What makes it invariant is the layout:
every task's blocks have the same shape and start on 64-byte boundaries, with
rows padded with zeros to multiples of 16 floats, so each batch entry is the
same gemm on the same layout whatever the batch. Zero padding changes no value
(zero weights and biases; relu(0) = tanh(0) = 0), elementwise ops are
lane-independent, and tests/test_local_sampler.py checks a task's actions alone and in
batches of many sizes and positions. Each task's advantages are computed alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import metarl_envs
from metarl.episodes import Rollouts
from metarl.params import NonFiniteError
from metarl.policies import ACTIVATIONS, Params
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


PAD = 16  # floats: 64 bytes


def _padded(size: int) -> int:
    return -(-size // PAD) * PAD


class WaveActions:
    """Actions of the R rollouts of each task of a wave: a = mean(s) + std * eps.

    Each layer is `torch.baddbmm` over [W tasks, R, in] with the tasks' own weights
    [W, in, out], in zero-padded 64-byte-aligned blocks (see the module docstring).
    eps is fixed per rollout (its own generator); std = exp(log_std) is computed per
    task on its own tensor.
    """

    def __init__(self, policy: nn.Module, params: Params, tasks: range, noise: np.ndarray):
        self.activation = ACTIVATIONS[policy.activation]
        count = len(tasks)
        stacks = {name: _task_stack(policy, params, name, tasks) for name in params}
        self.layers = []
        index = 0
        while f"layers.{index}.weight" in stacks:
            weight, bias = stacks[f"layers.{index}.weight"], stacks[f"layers.{index}.bias"]
            out_size, in_size = weight.shape[1:]
            padded_weight = torch.zeros(count, _padded(in_size), _padded(out_size))
            padded_weight[:, :in_size, :out_size] = weight.transpose(1, 2)
            padded_bias = torch.zeros(count, 1, _padded(out_size))
            padded_bias[:, 0, :out_size] = bias
            self.layers.append((padded_weight, padded_bias))
            index += 1
        self.action_dim = out_size
        self.observation_dim = policy.observation_dim
        self.context = stacks.get("context")  # [W, c] or None
        self.inputs = torch.zeros(count, noise.shape[1], self.layers[0][0].shape[1])
        if self.context is not None:  # fixed inputs beside the observation
            width = self.context.shape[1]
            self.inputs[:, :, self.observation_dim : self.observation_dim + width] = self.context[
                :, None, :
            ]
        std = torch.stack([stacks["log_std"][j].exp() for j in range(count)])  # per task
        self.scaled_noise = torch.from_numpy(noise) * std[:, None, None, :]  # [W, R, H, a]

    def __call__(self, observations: np.ndarray, t: int) -> torch.Tensor:
        """Actions [W, R, a] for the wave's observations [W, R, d] at time step t."""
        self.inputs[:, :, : self.observation_dim] = torch.from_numpy(observations)
        hidden = self.inputs
        for index, (weight, bias) in enumerate(self.layers):
            if index > 0:
                hidden = self.activation(hidden)
            hidden = torch.baddbmm(bias, hidden, weight)
        return hidden[:, :, : self.action_dim] + self.scaled_noise[:, :, t]


def _task_stack(policy: nn.Module, params: Params, name: str, tasks: range) -> torch.Tensor:
    """Parameter `name` of each task in `tasks` as a [W, ...] stack (theta expanded)."""
    value = params[name]
    if value.dim() > dict(policy.named_parameters())[name].dim():  # per-task stack
        return value[tasks.start : tasks.stop]
    return value.unsqueeze(0).expand(len(tasks), *value.shape)


def make_vector_env(
    env_id: str,
    num_envs: int,
    horizon: int,
    env_kwargs: dict | None = None,
    physics_threads: int = 1,
):
    """`num_envs` copies of `env_id` (see metarl_envs.vector) whose episodes end at `horizon`,
    their physics stepped over `physics_threads` threads (HalfCheetah and Ant)."""
    threads = {}
    if physics_threads != 1:
        if env_id not in metarl_envs.PHYSICS_THREADS_ENV_IDS:
            raise ValueError(
                f"physics_threads is for {', '.join(metarl_envs.PHYSICS_THREADS_ENV_IDS)}; "
                f"{env_id} steps its copies in one thread"
            )
        threads = {"physics_threads": physics_threads}
    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        max_episode_steps=horizon,
        **(env_kwargs or {}),
        **threads,
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
    successes: np.ndarray | None = None  # [T, R]: succeeded at some step (info "success")

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
        wave_actions = WaveActions(policy, params, range(start, stop), noise)
        running = np.ones(count, dtype=bool)
        step_actions = np.zeros((vector_env.num_envs, act_dim), np.float32)
        for t in range(horizon):
            obs_batch = obs[:count].astype(np.float32).reshape(stop - start, per_task, obs_dim)
            obs_view[wave, :, t] = obs_batch
            mask_view[wave, :, t] = running.reshape(stop - start, per_task)
            action = wave_actions(obs_batch, t).numpy()
            act_view[wave, :, t] = action
            step_actions[:count] = action.reshape(count, act_dim)
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
            if "success" in info:
                successes = np.zeros((num_tasks, per_task)) if successes is None else successes
                stepped_success = np.where(running, info["success"][:count], 0.0)
                successes[wave] = np.maximum(
                    successes[wave], stepped_success.reshape(stop - start, per_task)
                )
            running &= ~(terminated[:count] | truncated[:count])
            if not running.any():
                break
        if on_wave is not None:
            on_wave(int(mask_view[wave].sum()), count)
    if not torch.isfinite(actions).all():  # the baseline fit would fail on what they did
        raise NonFiniteError("the policy's actions are not finite")
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
        None if successes is None else torch.from_numpy(successes).to(torch.float32),
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
