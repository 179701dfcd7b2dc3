"""Numbers of the rollout math: discounted returns, GAE, normalization, the linear value
baseline, explained variance, and the Rollouts container's views and concatenation."""

import numpy as np
import pytest
import torch
from tiny_problems import rollouts_of

from metarl.episodes import (
    Rollouts,
    discounted_returns,
    explained_variance,
    generalized_advantages,
    normalize_per_task,
)
from metarl.value_baseline import fit_linear_baseline


def test_discounted_returns_by_hand():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    gamma = 0.9
    expected = torch.tensor(
        [
            [1 + 0.9 * 2 + 0.81 * 3, 2 + 0.9 * 3, 3.0, 0.0],
            [1 + 0.9 + 0.81 + 0.729, 1 + 0.9 + 0.81, 1 + 0.9, 1.0],
        ]
    )
    torch.testing.assert_close(discounted_returns(rewards, mask, gamma), expected)


def test_gae_by_hand():
    rewards = torch.tensor([[1.0, -1.0, 2.0]])
    values = torch.tensor([[0.5, 0.2, -0.3]])
    mask = torch.ones(1, 3)
    gamma, lam = 0.9, 0.8
    d2 = 2.0 - (-0.3)  # last step: no value after the episode
    d1 = -1.0 + 0.9 * (-0.3) - 0.2
    d0 = 1.0 + 0.9 * 0.2 - 0.5
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    got = generalized_advantages(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(got, torch.tensor([[a0, a1, a2]]))
    # lambda = 1: discounted returns minus the baseline
    got_one = generalized_advantages(rewards, values, mask, gamma, 1.0)
    torch.testing.assert_close(got_one, discounted_returns(rewards, mask, gamma) - values)


def test_gae_ignores_padding_after_termination():
    rewards = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    values = torch.tensor([[0.3, 0.7, 5.0, 5.0]])  # values on padded steps must not leak in
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    got = generalized_advantages(rewards, values, mask, 0.5, 1.0)
    torch.testing.assert_close(got, torch.tensor([[1.5 - 0.3, 1.0 - 0.7, 0.0, 0.0]]))


def test_normalize_per_task_uses_only_valid_steps():
    advantages = torch.tensor([[1.0, 3.0, 100.0], [2.0, 2.0, 8.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    got = normalize_per_task(advantages, mask)
    torch.testing.assert_close(got[0], torch.tensor([-1.0, 1.0, 0.0]), atol=1e-6, rtol=0)
    assert got[1][mask[1] > 0].mean().abs() < 1e-6
    assert (got[1] ** 2).mean().sqrt() == pytest.approx(1.0, abs=1e-5)


def test_linear_baseline_reduces_return_variance():
    rng = np.random.default_rng(0)
    tasks, rollouts, horizon, dim = 3, 10, 50, 4
    observations = torch.from_numpy(rng.normal(size=(tasks, rollouts, horizon, dim)))
    t = torch.arange(horizon, dtype=torch.float64) / horizon
    signal = observations[..., 0] * 2.0 - observations[..., 1] ** 2 + 3.0 * (1 - t)
    returns = signal + 0.1 * torch.from_numpy(rng.normal(size=signal.shape))
    mask = torch.ones(tasks, rollouts, horizon)
    mask[0, :, 40:] = 0.0
    returns = returns * mask
    values = fit_linear_baseline(observations, returns, mask)
    residual = (returns - values)[mask > 0]
    assert residual.var() < 0.05 * returns[mask > 0].var()
    assert torch.all(values[mask == 0] == 0)


def test_linear_baseline_rejects_non_finite_data():
    observations = torch.zeros(1, 2, 3, 2)
    observations[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite"):
        fit_linear_baseline(observations, torch.ones(1, 2, 3), torch.ones(1, 2, 3))


def test_rollouts_step_views_and_concatenation_by_task_id():
    rng = np.random.default_rng(1)
    obs = torch.from_numpy(rng.normal(size=(3, 2, 4, 5)).astype(np.float32))
    acts = torch.from_numpy(rng.normal(size=(3, 2, 4, 2)).astype(np.float32))
    adv = torch.from_numpy(rng.normal(size=(3, 2, 4)).astype(np.float32))
    mask = torch.ones(3, 2, 4)
    mask[0, 1, 2:] = 0
    whole = rollouts_of(obs, acts, adv, mask)
    assert whole.step_observations.shape == (3, 8, 5)
    assert whole.step_observations.data_ptr() == obs.data_ptr()  # a view, not a copy
    torch.testing.assert_close(whole.step_observations[1, 5], obs[1, 1, 1])
    assert whole.num_steps == 22 and whole.mean_episode_length() == 22 / 6
    # chunks sampled apart, out of order, join back in task-id order
    parts = [whole.select([2]), whole.select([0, 1])]
    joined = Rollouts.concatenate(parts)
    for name in ("observations", "actions", "advantages", "mask", "task_ids"):
        assert torch.equal(getattr(joined, name), getattr(whole, name)), name


def test_explained_variance_by_hand():
    targets = torch.tensor([[[1.0, 2.0, 3.0, 9.0]], [[2.0, 2.0, 2.0, 2.0]]])
    predictions = torch.tensor([[[1.0, 2.0, 4.0, 0.0]], [[2.0, 2.0, 2.0, 2.0]]])
    mask = torch.tensor([[[1.0, 1.0, 1.0, 0.0]], [[1.0, 1.0, 1.0, 1.0]]])
    got = explained_variance(targets, predictions, mask)
    # task 0, valid steps only: residuals (0, 0, -1): var 2/9; targets (1, 2, 3): var 2/3
    assert got[0].item() == pytest.approx(1 - (2 / 9) / (2 / 3))
    assert torch.isnan(got[1])  # constant targets: undefined
