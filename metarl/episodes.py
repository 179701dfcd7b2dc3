"""Rollouts ready for the learner, and the return and advantage arithmetic they need.

`Rollouts` is what a sampler hands the learner for each inner step and for the
validation rollouts of a meta-batch (together a `MetaBatch`): torch tensors laid
out as tasks x rollouts x time steps (T x R x H), zero-padded after an episode
ends, with `mask` 1 on the steps that happened, the advantages already computed
(once, by the sampler, per task: GAE against the linear value baseline fitted on
these rollouts) and what the logs report about them (each reward term's
per-episode sums, the value baseline's explained variance). The losses read each
task's steps as one axis of length M = R * H (`step_*` views, no copies); padded
steps carry mask 0 and advantage 0.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch


@dataclass
class Rollouts:
    """R rollouts of each of T tasks with their advantages: tensors shaped [T, R, H, ...]."""

    observations: torch.Tensor  # float32 [T, R, H, obs_dim]
    actions: torch.Tensor  # float32 [T, R, H, act_dim]
    rewards: torch.Tensor  # float32 [T, R, H]
    mask: torch.Tensor  # float32 [T, R, H]; 1 where a step happened
    advantages: torch.Tensor  # float32 [T, R, H]; 0 where mask is 0
    task_ids: torch.Tensor  # int64 [T]: each task's index in the meta-batch
    reward_terms: dict[str, torch.Tensor] = field(default_factory=dict)  # term -> [T, R] sums
    explained_variance: torch.Tensor | None = None  # float64 [T], of the value baseline
    # float32 [T, R]: 1 where the episode succeeded at some step (envs whose info has "success")
    successes: torch.Tensor | None = None

    @property
    def num_tasks(self) -> int:
        return int(self.mask.shape[0])

    @property
    def num_steps(self) -> int:
        """Environment steps taken (valid steps)."""
        return int(self.mask.sum())

    @property
    def step_observations(self) -> torch.Tensor:
        return self.observations.flatten(1, 2)  # [T, M, obs_dim]

    @property
    def step_actions(self) -> torch.Tensor:
        return self.actions.flatten(1, 2)

    @property
    def step_advantages(self) -> torch.Tensor:
        return self.advantages.flatten(1, 2)  # [T, M]

    @property
    def step_mask(self) -> torch.Tensor:
        return self.mask.flatten(1, 2)

    def episode_returns(self) -> torch.Tensor:
        """Undiscounted return of every episode, [T, R]."""
        return (self.rewards * self.mask).sum(-1)

    def mean_return(self) -> float:
        return float(self.episode_returns().double().mean())

    def mean_episode_length(self) -> float:
        return float(self.mask.double().sum(-1).mean())

    def mean_reward_terms(self) -> dict[str, float]:
        """Each reward term's mean per-episode sum (they add up to `mean_return`)."""
        return {name: float(sums.mean()) for name, sums in self.reward_terms.items()}

    def mean_explained_variance(self) -> float:
        """The value baseline's explained variance averaged over tasks (nan where undefined)."""
        if self.explained_variance is None:
            return math.nan
        values = self.explained_variance[torch.isfinite(self.explained_variance)]
        return float(values.mean()) if len(values) else math.nan

    def mean_success(self) -> float:
        """The fraction of episodes that succeeded (nan for envs without a success flag)."""
        return math.nan if self.successes is None else float(self.successes.double().mean())

    def to(self, device: torch.device | str) -> Rollouts:
        """The tensors the losses read, on `device` (the logs' fields stay where they are)."""
        return Rollouts(
            self.observations.to(device),
            self.actions.to(device),
            self.rewards.to(device),
            self.mask.to(device),
            self.advantages.to(device),
            self.task_ids,
            self.reward_terms,
            self.explained_variance,
            self.successes,
        )

    def select(self, positions: torch.Tensor | list[int]) -> Rollouts:
        index = torch.as_tensor(positions, dtype=torch.int64)
        return Rollouts(
            self.observations[index.to(self.observations.device)],
            self.actions[index.to(self.actions.device)],
            self.rewards[index.to(self.rewards.device)],
            self.mask[index.to(self.mask.device)],
            self.advantages[index.to(self.advantages.device)],
            self.task_ids[index],
            {name: sums[index] for name, sums in self.reward_terms.items()},
            None if self.explained_variance is None else self.explained_variance[index],
            None if self.successes is None else self.successes[index],
        )

    @staticmethod
    def concatenate(parts: list[Rollouts]) -> Rollouts:
        """Join chunks of tasks sampled separately, ordered by task id."""
        first = parts[0]
        joined = Rollouts(
            *(torch.cat([getattr(p, name) for p in parts]) for name in _TENSORS),
            {name: torch.cat([p.reward_terms[name] for p in parts]) for name in first.reward_terms},
            None
            if first.explained_variance is None
            else torch.cat([p.explained_variance for p in parts]),
            None if first.successes is None else torch.cat([p.successes for p in parts]),
        )
        return joined.select(torch.argsort(joined.task_ids, stable=True))


@dataclass
class MetaBatch:
    """train[k]: rollouts of the parameters after k inner steps; valid: of the adapted ones."""

    train: list[Rollouts]
    valid: Rollouts

    @property
    def phases(self) -> list[Rollouts]:
        return [*self.train, self.valid]

    @property
    def env_steps(self) -> int:
        return sum(r.num_steps for r in self.phases)

    def select(self, positions: torch.Tensor) -> MetaBatch:
        return MetaBatch([r.select(positions) for r in self.train], self.valid.select(positions))

    def to(self, device: torch.device | str) -> MetaBatch:
        return MetaBatch([r.to(device) for r in self.train], self.valid.to(device))

    @staticmethod
    def concatenate(parts: list[MetaBatch]) -> MetaBatch:
        """Join chunks of tasks sampled separately, ordered by task id."""
        train = [
            Rollouts.concatenate([p.train[k] for p in parts]) for k in range(len(parts[0].train))
        ]
        return MetaBatch(train, Rollouts.concatenate([p.valid for p in parts]))


_TENSORS = ("observations", "actions", "rewards", "mask", "advantages", "task_ids")


@functools.lru_cache(maxsize=16)
def _discount_matrix(length: int, factor: float) -> torch.Tensor:
    """D [H, H] with D[k, t] = factor^(k - t) for k >= t, else 0 (float64)."""
    steps = torch.arange(length, dtype=torch.float64)
    powers = torch.tensor(factor, dtype=torch.float64) ** (steps[:, None] - steps[None, :])
    return torch.tril(powers)


def discounted_cumsum(values: torch.Tensor, factor: float) -> torch.Tensor:
    """y_t = sum_{k >= t} factor^(k - t) x_k along the last axis (float64, one matmul)."""
    matrix = _discount_matrix(values.shape[-1], float(factor)).to(values.device)
    return (values.to(torch.float64) @ matrix).to(values.dtype)


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


def explained_variance(
    targets: torch.Tensor, predictions: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """1 - Var(targets - predictions) / Var(targets) per task over its valid steps ([T] float64).

    1 is a perfect fit, 0 no better than the mean, negative worse; nan where the
    targets do not vary.
    """
    dims = tuple(range(1, targets.dim()))
    weights = mask.to(torch.float64)
    count = weights.sum(dims).clamp(min=1.0)

    def variance(x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float64)
        mean = (x * weights).sum(dims, keepdim=True) / count.reshape(-1, *[1] * len(dims))
        return (((x - mean) * weights) ** 2).sum(dims) / count

    target_variance = variance(targets)
    ratio = variance(targets - predictions) / target_variance
    return torch.where(target_variance > 0, 1.0 - ratio, torch.full_like(ratio, math.nan))
