"""Numbers of the meta-step: meta-gradients against finite differences, the inner step, the
Gaussian KL, Hessian-vector products, conjugate gradient, the line search, task chunks."""

import numpy as np
import pytest
import torch
from tiny_problems import rollouts_of, tiny_problem

from metarl.episodes import MetaBatch
from metarl.inner import adapt, reinforce_loss
from metarl.maml_trpo import (
    MetaObjective,
    MetaStepSettings,
    hessian_vector_product,
    meta_step,
)
from metarl.policies import gaussian_kl, policy_params
from metarl.trpo import conjugate_gradient, flatten, line_search


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
