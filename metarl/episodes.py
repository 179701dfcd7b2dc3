"""Batches of padded episodes, discounted returns, GAE, and the flat step batches losses use.

`Episodes` is what a sampler returns: numpy arrays laid out as tasks x rollouts
x time steps (T x R x H), zero-padded after an episode ends, with `mask` 1 on the
steps that happened. `StepBatch` is the torch view the losses read: per task,
its steps flattened into one axis of length M, either all R*H padded steps
(`pack=False`, the same shapes whatever the batch, so results do not depend on
how tasks are grouped) or only the valid steps packed to the front and padded
to the longest task (`pack=True`, less work when episodes end early).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.signal
import torch


@dataclass
class Episodes:
    """Rollouts of a meta-batch of tasks: arrays shaped [T, R, H, ...]."""

    observations: np.ndarray  # float32 [T, R, H, obs_dim]
    actions: np.ndarray  # float32 [T, R, H, act_dim]
    rewards: np.ndarray  # float32 [T, R, H]
    mask: np.ndarray  # float32 [T, R, H]; 1 where a step happened
    task_ids: np.ndarray  # int64 [T]: each task's index in the meta-batch

    @property
    def num_tasks(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def num_steps(self) -> int:
        """Environment steps taken (valid steps)."""
        return int(self.mask.sum())

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every episode, [T, R]."""
        return (self.rewards * self.mask).sum(-1)

    def mean_return(self) -> float:
        return float(self.episode_returns().mean())

    def select(self, task_positions: np.ndarray | list[int]) -> Episodes:
        index = np.asarray(task_positions)
        return Episodes(
            self.observations[index],
            self.actions[index],
            self.rewards[index],
            self.mask[index],
            self.task_ids[index],
        )

    @staticmethod
    def concatenate(parts: list[Episodes]) -> Episodes:
        """Join per-task chunks and order them by task id."""
        joined = Episodes(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS),
        )
        return joined.select(np.argsort(joined.task_ids, kind="stable"))


_FIELDS = ("observations", "actions", "rewards", "mask", "task_ids")


def discounted_cumsum(values: torch.Tensor, factor: float) -> torch.Tensor:
    """y_t = sum_k factor^k x_{t+k} along the last axis (a reversed first-order IIR filter)."""
    x = values.detach().cpu().numpy()[..., ::-1]
    y = scipy.signal.lfilter([1.0], [1.0, -factor], x, axis=-1)[..., ::-1]
    return as_tensor(y).to(values.dtype)


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """sum_k gamma^k r_{t+k} within each episode; time is the last axis.

    `mask` marks the valid steps: a prefix of ones per episode (padding after its end).
    """
    return discounted_cumsum(rewards * mask, gamma) * mask


def generalized_advantages(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> torch.Tensor:
    """GAE(gamma, lambda); the value after an episode's last step is 0 (finite horizon).

    delta_t = r_t + gamma V(s_{t+1}) - V(s_t), A_t = sum_k (gamma lam)^k delta_{t+k}.
    With lam = 1 this is the discounted return minus the baseline.
    """
    valid_values = values * mask
    next_values = torch.zeros_like(valid_values)
    next_values[..., :-1] = valid_values[..., 1:]
    deltas = (rewards + gamma * next_values - values) * mask
    return discounted_cumsum(deltas, gamma * lam) * mask


def normalize_per_task(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Center and scale each task's advantages over its valid steps ([T, ...] arrays)."""
    dims = tuple(range(1, advantages.dim()))
    count = mask.sum(dims, keepdim=True).clamp(min=1.0)
    mean = (advantages * mask).sum(dims, keepdim=True) / count
    variance = (((advantages - mean) * mask) ** 2).sum(dims, keepdim=True) / count
    return (advantages - mean) / (variance.sqrt() + 1e-8) * mask


@dataclass
class StepBatch:
    """Per-task flat steps for the losses: [T, M, ...] tensors and a [T, M] mask."""

    observations: torch.Tensor
    actions: torch.Tensor
    advantages: torch.Tensor
    mask: torch.Tensor

    @property
    def num_tasks(self) -> int:
        return int(self.mask.shape[0])

    def select(self, task_positions: torch.Tensor) -> StepBatch:
        return StepBatch(
            self.observations[task_positions],
            self.actions[task_positions],
            self.advantages[task_positions],
            self.mask[task_positions],
        )


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """A torch copy of `array` in torch's own (64-byte aligned) memory.

    numpy arrays can start at any 16-byte boundary, and some kernels round
    differently on differently aligned inputs; copies keep results reproducible.
    Any strides (reversed views too) are copied once, straight into the tensor.
    """
    dtype = torch.from_numpy(np.empty(0, dtype=array.dtype)).dtype
    tensor = torch.empty(array.shape, dtype=dtype)
    tensor.numpy()[...] = array
    return tensor


def step_batch(episodes: Episodes, advantages: torch.Tensor, pack: bool) -> StepBatch:
    """Flatten each task's rollouts into one step axis; `pack` keeps only valid steps."""
    num_tasks = episodes.num_tasks
    observations = as_tensor(episodes.observations).reshape(
        num_tasks, -1, episodes.observations.shape[-1]
    )
    actions = as_tensor(episodes.actions).reshape(num_tasks, -1, episodes.actions.shape[-1])
    mask = as_tensor(episodes.mask).reshape(num_tasks, -1)
    advantages = advantages.reshape(num_tasks, -1).to(torch.float32)
    if pack:
        counts = mask.sum(-1)
        length = max(int(counts.max()), 1)
        order = torch.argsort(1.0 - mask, dim=-1, stable=True)[:, :length]  # valid steps first
        observations = torch.gather(
            observations, 1, order.unsqueeze(-1).expand(-1, -1, observations.shape[-1])
        )
        actions = torch.gather(actions, 1, order.unsqueeze(-1).expand(-1, -1, actions.shape[-1]))
        advantages = torch.gather(advantages, 1, order)
        mask = torch.gather(mask, 1, order)
    return StepBatch(observations, actions, advantages * mask, mask)
