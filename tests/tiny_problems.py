"""Tiny float64 policies and rollouts: small enough to check by hand and by finite differences."""

from __future__ import annotations

import torch

from metarl.episodes import MetaBatch, Rollouts
from metarl.policies import GaussianMLPPolicy


def rollouts_of(observations, actions, advantages, mask, task_ids=None) -> Rollouts:
    """A Rollouts container [T, R, H, ...] with zero rewards, for the losses."""
    num_tasks = mask.shape[0]
    ids = torch.arange(num_tasks) if task_ids is None else torch.as_tensor(task_ids)
    return Rollouts(observations, actions, torch.zeros_like(mask), mask, advantages, ids)


def tiny_problem(num_tasks=3, steps=12, seed=0, inner_steps=1):
    """A tanh policy (3 -> 5 -> 2) and a meta-batch of random one-rollout phases per task."""
    torch.manual_seed(seed)
    policy = GaussianMLPPolicy(3, 2, hidden_sizes=(5,), activation="tanh").double()
    with torch.no_grad():
        policy.log_std.copy_(torch.tensor([-0.3, 0.2]))

    def batch():  # R = 1 rollout of `steps` steps per task
        return rollouts_of(
            torch.randn(num_tasks, 1, steps, 3, dtype=torch.float64),
            torch.randn(num_tasks, 1, steps, 2, dtype=torch.float64),
            torch.randn(num_tasks, 1, steps, dtype=torch.float64),
            torch.ones(num_tasks, 1, steps, dtype=torch.float64),
        )

    data = MetaBatch([batch() for _ in range(inner_steps)], batch())
    return policy, data
