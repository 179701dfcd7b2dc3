"""Numbers of the core math: returns, GAE, baseline, meta-gradients, HVPs, CG, line search."""

import numpy as np
import pytest
import torch

from metarl.episodes import (
    MetaBatch,
    Rollouts,
    discounted_returns,
    explained_variance,
    generalized_advantages,
    normalize_per_task,
)
from metarl.inner import adapt, reinforce_loss
from metarl.maml_trpo import (
    MetaObjective,
    MetaStepSettings,
    hessian_vector_product,
    meta_step,
)
from metarl.policies import GaussianMLPPolicy, gaussian_kl, policy_params
from metarl.trpo import conjugate_gradient, flatten, line_search
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


def rollouts_of(observations, actions, advantages, mask, task_ids=None) -> Rollouts:
    """A Rollouts container [T, R, H, ...] with zero rewards, for the losses."""
    num_tasks = mask.shape[0]
    ids = torch.arange(num_tasks) if task_ids is None else torch.as_tensor(task_ids)
    return Rollouts(observations, actions, torch.zeros_like(mask), mask, advantages, ids)


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


# ---- meta-gradients, on a tiny float64 problem -------------------------------------------


def tiny_problem(num_tasks=3, steps=12, seed=0, inner_steps=1):
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


def post_adaptation_loss(policy, theta, data, step_sizes, first_order):
    params = dict(zip([n for n, _ in policy.named_parameters()], theta))
    adapted = adapt(policy, params, data.train, step_sizes, first_order=first_order)
    return reinforce_loss(policy, adapted, data.valid).sum()


def finite_difference_gradient(f, theta, eps=1e-6):
    grads = []
    for i, p in enumerate(theta):
        g = torch.zeros_like(p)
        for j in range(p.numel()):
            plus = [q.clone() for q in theta]
            minus = [q.clone() for q in theta]
            plus[i].view(-1)[j] += eps
            minus[i].view(-1)[j] -= eps
            g.view(-1)[j] = (f(plus) - f(minus)) / (2 * eps)
        grads.append(g)
    return flatten(grads)


@pytest.mark.parametrize("inner_steps, step_sizes", [(1, [0.5]), (2, [0.5, 0.3])])
def test_meta_gradient_matches_finite_differences_and_differs_from_first_order(
    inner_steps, step_sizes
):
    policy, data = tiny_problem(inner_steps=inner_steps)
    theta = [p.detach().clone().requires_grad_() for p in policy.parameters()]
    loss = post_adaptation_loss(policy, theta, data, step_sizes, first_order=False)
    exact = flatten(list(torch.autograd.grad(loss, theta)))

    def f(values):
        values = [v.detach().requires_grad_() for v in values]
        return post_adaptation_loss(policy, values, data, step_sizes, first_order=False).item()

    numeric = finite_difference_gradient(f, [t.detach() for t in theta])
    relative = (exact - numeric).norm() / numeric.norm()
    assert relative < 1e-6, relative

    theta_fo = [p.detach().clone().requires_grad_() for p in policy.parameters()]
    loss_fo = post_adaptation_loss(policy, theta_fo, data, step_sizes, first_order=True)
    first_order = flatten(list(torch.autograd.grad(loss_fo, theta_fo)))
    assert (first_order - exact).norm() / exact.norm() > 1e-3


def test_adapt_changes_only_the_named_parameters():
    policy, data = tiny_problem()
    params = policy_params(policy)
    adapted = adapt(policy, params, data.train, [0.5], adapted_names=["log_std"])
    assert adapted["log_std"].shape == (3, 2)
    assert not torch.equal(adapted["log_std"][0], params["log_std"])
    for name in params:
        if name != "log_std":
            assert torch.equal(adapted[name], params[name])


def test_gaussian_kl_closed_form_matches_monte_carlo():
    torch.manual_seed(0)
    old_mean, mean = torch.tensor([0.3, -1.0]), torch.tensor([0.1, -0.5])
    old_log_std, log_std = torch.tensor([0.2, -0.4]), torch.tensor([0.0, -0.1])
    old = torch.distributions.Normal(old_mean, old_log_std.exp())
    new = torch.distributions.Normal(mean, log_std.exp())
    reference = torch.distributions.kl_divergence(old, new).sum()
    torch.testing.assert_close(gaussian_kl(old_mean, old_log_std, mean, log_std), reference)


def hvp_setup(dtype=torch.float64, inner_steps=1):
    policy, data = tiny_problem(num_tasks=4, steps=20, seed=3, inner_steps=inner_steps)
    policy = policy.to(dtype)

    def convert(b):
        return rollouts_of(
            *(x.to(dtype) for x in (b.observations, b.actions, b.advantages, b.mask))
        )

    data = MetaBatch([convert(b) for b in data.train], convert(data.valid))
    like = {n: p.detach() for n, p in policy.named_parameters()}
    return policy, like, data


@pytest.mark.parametrize(
    "method, tolerance", [("finite_difference", 1e-4), ("finite_difference_central", 1e-7)]
)
def test_finite_difference_hvp_agrees_with_exact(method, tolerance):
    policy, like, data = hvp_setup()
    theta_old = flatten(like)
    base = dict(inner_step_sizes=(0.5,), cg_damping=0.0, hvp_epsilon=1e-5)
    objective = MetaObjective.around(policy, like, data, MetaStepSettings(**base))
    exact = hessian_vector_product(objective, theta_old, MetaStepSettings(hvp="exact", **base))
    approx = hessian_vector_product(objective, theta_old, MetaStepSettings(hvp=method, **base))
    vector = torch.randn(
        theta_old.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    h_exact, h_approx = exact(vector), approx(vector)
    relative = float((h_exact - h_approx).norm() / h_exact.norm())
    print(f"{method}: relative error {relative:.2e}")
    assert relative < tolerance
    # and H is symmetric positive semi-definite along random directions
    assert float(vector.dot(h_exact)) > 0


def test_kl_gradient_is_zero_at_theta_old():
    policy, like, data = hvp_setup()
    objective = MetaObjective.around(policy, like, data, MetaStepSettings(inner_step_sizes=(0.5,)))
    assert torch.count_nonzero(objective.kl_gradient(flatten(like))) == 0


def test_conjugate_gradient_solves_random_spd_system():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(30, 30, dtype=torch.float64, generator=generator)
    h = a @ a.T + 0.5 * torch.eye(30, dtype=torch.float64)
    b = torch.randn(30, dtype=torch.float64, generator=generator)
    x, hx, residual = conjugate_gradient(lambda v: h @ v, b, iterations=200, tolerance=1e-24)
    torch.testing.assert_close(x, torch.linalg.solve(h, b), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(hx, h @ x, rtol=1e-6, atol=1e-6)
    assert residual <= 1e-11
    # the default tolerance (|r|^2 <= 1e-10) stops early with |r| <= 1e-5
    _, _, residual = conjugate_gradient(lambda v: h @ v, b, iterations=200)
    assert residual <= 1e-5


def test_line_search_never_accepts_kl_above_limit_or_non_finite():
    theta = torch.zeros(2)
    step = torch.tensor([1.0, 0.0])
    # loss improves with any positive step; KL = 4 x^2 is within 0.01 only for x <= 0.05
    result = line_search(lambda t: (-float(t[0]), 4 * float(t[0]) ** 2), theta, step, 0.0, 0.01)
    assert result.accepted and result.kl <= 0.01
    assert result.steps == 1 + int(np.ceil(np.log(0.05) / np.log(0.8)))
    # NaN everywhere: nothing accepted, theta unchanged
    nan = line_search(lambda t: (float("nan"), 0.0), theta, step, 0.0, 0.01)
    assert not nan.accepted and torch.equal(nan.theta, theta) and nan.steps == 15
    # infinite KL: nothing accepted
    inf = line_search(lambda t: (-1.0, float("inf")), theta, step, 0.0, 0.01)
    assert not inf.accepted
    # no improvement: nothing accepted
    worse = line_search(lambda t: (1.0, 0.0), theta, step, 0.0, 0.01)
    assert not worse.accepted


def test_meta_step_in_task_chunks_equals_the_whole_batch(monkeypatch):
    """Chunking the tasks (to bound memory) changes only the order of float sums."""
    import metarl.maml_trpo as maml_trpo

    policy, data = tiny_problem(num_tasks=5, inner_steps=1)
    params = dict(policy.named_parameters())
    settings = MetaStepSettings(inner_step_sizes=(0.5,), max_kl=0.05, cg_iters=5)
    whole, whole_stats = meta_step(policy, params, data, settings, np.random.default_rng(0))
    objective = MetaObjective.around(policy, params, data, settings)
    assert len(objective.chunks()) == 1

    monkeypatch.setattr(maml_trpo, "CHUNK_ELEMENTS", 2 * 12 * 5)  # two tasks per chunk
    assert [w for w, _ in objective.chunks()] == [0.4, 0.4, 0.2]
    chunked, chunked_stats = meta_step(policy, params, data, settings, np.random.default_rng(0))
    assert whole_stats.accepted and chunked_stats.accepted
    for name in whole:
        torch.testing.assert_close(chunked[name], whole[name], rtol=1e-9, atol=1e-12)
    assert chunked_stats.surrogate_before == pytest.approx(whole_stats.surrogate_before, 1e-12)
