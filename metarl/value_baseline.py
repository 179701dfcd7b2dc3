"""The linear feature value baseline (Duan et al. 2016), fitted per task on the rollouts it scores.

(A value baseline: the comparison methods of evaluation are in `comparisons`.)

Features per step: clip(obs, -10, 10), its square, t, t^2, t^3 (t = step index /
100) and 1. The fit is ridge least squares; where the normal equations do not
give a finite solution the ridge coefficient grows tenfold, up to five times,
and non-finite data that no ridge can fix raises an error.
All tasks are fitted in one batched solve (float64).
"""

from __future__ import annotations

import torch

from metarl.episodes import (
    discounted_returns,
    explained_variance,
    generalized_advantages,
    normalize_per_task,
)

OBSERVATION_CLIP = 10.0
INITIAL_RIDGE = 1e-5
RIDGE_TRIES = 5


def baseline_features(observations: torch.Tensor) -> torch.Tensor:
    """[..., H, obs_dim] observations -> [..., H, 2 * obs_dim + 4] features (float64)."""
    clipped = observations.to(torch.float64).clamp(-OBSERVATION_CLIP, OBSERVATION_CLIP)
    horizon = observations.shape[-2]
    t = torch.arange(horizon, dtype=torch.float64) / 100.0
    t = t.reshape(*([1] * (observations.dim() - 2)), horizon, 1).expand(*clipped.shape[:-1], 1)
    return torch.cat([clipped, clipped**2, t, t**2, t**3, torch.ones_like(t)], dim=-1)


def fit_linear_baseline(
    observations: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Baseline values [T, R, H] from a per-task ridge fit of returns on the features.

    observations: [T, R, H, obs_dim]; returns, mask: [T, R, H]. Padded steps get value 0.
    """
    num_tasks = observations.shape[0]
    mask64 = mask.to(torch.float64)
    features = baseline_features(observations) * mask64.unsqueeze(-1)
    flat = features.reshape(num_tasks, -1, features.shape[-1])
    targets = (returns.to(torch.float64) * mask64).reshape(num_tasks, -1, 1)
    gram = flat.transpose(1, 2) @ flat
    rhs = flat.transpose(1, 2) @ targets
    identity = torch.eye(gram.shape[-1], dtype=torch.float64)

    weights = torch.full_like(rhs, float("nan"))
    unsolved = torch.ones(num_tasks, dtype=torch.bool)
    ridge = INITIAL_RIDGE
    for _ in range(RIDGE_TRIES):
        solution, info = torch.linalg.solve_ex(gram + ridge * identity, rhs)
        solved = (info == 0) & torch.isfinite(solution).all(dim=(1, 2))
        newly = unsolved & solved
        weights[newly] = solution[newly]
        unsolved &= ~solved
        if not unsolved.any():
            break
        ridge *= 10.0
    if unsolved.any():
        # With finite features the ridge system is positive definite: this means NaN/inf data.
        raise FloatingPointError(
            f"linear baseline: no finite fit for tasks {unsolved.nonzero().flatten().tolist()} "
            "(non-finite observations or returns)"
        )
    values = (flat @ weights).reshape(returns.shape)
    return values.to(returns.dtype)


def estimate_advantages(
    observations: torch.Tensor,
    rewards: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    gae_lambda: float,
    normalize: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages [T, R, H], explained variance [T]) of rollouts [T, R, H, ...].

    GAE against a baseline fitted, per task, on the discounted returns of these
    rollouts; the explained variance says how well that fit predicts the returns.
    """
    returns = discounted_returns(rewards, mask, gamma)
    values = fit_linear_baseline(observations, returns, mask)
    advantages = generalized_advantages(rewards, values, mask, gamma, gae_lambda)
    if normalize:
        advantages = normalize_per_task(advantages, mask)
    return advantages, explained_variance(returns, values, mask)
