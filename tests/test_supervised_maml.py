"""Supervised MAML: meta-gradients against finite differences (second order, first order,
batch norm, context vectors), the inner loop, batch statistics, and the comparisons."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metarl.supervised.comparisons import MultitaskRegressors, tune_eval_lr
from metarl.supervised.maml import InnerLoop, adapt_on_support, query_curve, query_losses
from metarl.supervised.models import (
    ConvNet,
    OmniglotMLP,
    SinusoidMLP,
    batched_forward,
    model_params,
)
from metarl.supervised.tasks import TaskBatch, sample_sinusoid_tasks

torch.set_num_threads(1)


def meta_loss(model, params, batch, inner) -> torch.Tensor:
    return query_losses(model, params, batch, inner)[0].mean()


def finite_difference_gradient(f, params: dict, eps: float = 1e-6) -> dict:
    """Central differences of the scalar f(params) for every entry of every parameter."""
    grads = {}
    for name, p in params.items():
        grad = torch.zeros_like(p)
        for i in range(p.numel()):
            shifted = {}
            for sign in (1, -1):
                q = p.detach().clone()
                q.view(-1)[i] += sign * eps
                shifted[sign] = f({**params, name: q.requires_grad_()}).item()
            grad.view(-1)[i] = (shifted[1] - shifted[-1]) / (2 * eps)
        grads[name] = grad
    return grads


def tiny_regression(seed: int = 0):
    torch.manual_seed(seed)
    model = SinusoidMLP(1, [4]).double()
    batch = sample_sinusoid_tasks(np.random.default_rng(seed), 3, 4, 5).to(torch.float64)
    return model, batch


def tiny_classification(seed: int = 0, context_dim: int = 0):
    """A batch-norm network (the non-conv Omniglot net, narrow) on random 3-way tasks."""
    torch.manual_seed(seed)
    model = OmniglotMLP(3, hidden_sizes=(5, 4), context_dim=context_dim).double()
    x = torch.randn(2, 12, 1, 28, 28, dtype=torch.float64)
    y = torch.arange(3).repeat(4).expand(2, 12)
    batch = TaskBatch(x[:, :6], y[:, :6], x[:, 6:], y[:, 6:])
    return model, batch


@pytest.mark.parametrize("use_vmap", [True, False])
def test_second_order_meta_gradient_matches_finite_differences(use_vmap):
    model, batch = tiny_regression()
    inner = InnerLoop("mse", steps=2, step_size=0.05, use_vmap=use_vmap)
    params = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    grads = torch.autograd.grad(meta_loss(model, params, batch, inner), list(params.values()))
    expected = finite_difference_gradient(lambda p: meta_loss(model, p, batch, inner), params)
    for (name, numeric), analytic in zip(expected.items(), grads):
        torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-7, msg=name)


def test_batch_norm_meta_gradient_matches_finite_differences():
    model, batch = tiny_classification()
    inner = InnerLoop("cross_entropy", steps=1, step_size=0.4)
    params = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    loss = meta_loss(model, params, batch, inner)
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    small = {n: params[n] for n in ("features.1.weight", "features.4.bias", "head.weight")}
    expected = finite_difference_gradient(
        lambda p: meta_loss(model, {**params, **p}, batch, inner), small
    )
    for name, numeric in expected.items():
        torch.testing.assert_close(grads[name], numeric, rtol=1e-5, atol=1e-7, msg=name)


def test_context_vector_adapts_only_z_and_its_meta_gradient_is_exact():
    torch.manual_seed(0)
    model = SinusoidMLP(1, [4], context_dim=2).double()
    batch = sample_sinusoid_tasks(np.random.default_rng(0), 3, 4, 5).to(torch.float64)
    inner = InnerLoop("mse", steps=2, step_size=0.1, names=("context",))
    params = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    adapted = adapt_on_support(model, params, batch.support_x, batch.support_y, inner)
    assert adapted["context"].shape == (3, 2)  # one z per task
    assert all(adapted[n] is params[n] for n in params if n != "context")
    assert not torch.allclose(adapted["context"][0], adapted["context"][1])
    loss = meta_loss(model, params, batch, inner)
    grads = torch.autograd.grad(loss, list(params.values()))
    expected = finite_difference_gradient(lambda p: meta_loss(model, p, batch, inner), params)
    for (name, numeric), analytic in zip(expected.items(), grads):
        torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-7, msg=name)


def test_conv_context_is_one_free_value_per_pixel_that_batch_norm_keeps():
    """z is image-shaped; batch norm removes a constant z but not its pattern over the pixels.

    (A z broadcast over the pixels, as before, is a constant channel: it reached the
    logits only through the zero-padded border.)
    """
    torch.manual_seed(0)
    model = ConvNet(3, filters=4, context_dim=2).double()
    assert model.context.shape == (2, 28, 28) and not model.context.any()
    x = torch.rand(5, 1, 28, 28, dtype=torch.float64)
    z = torch.randn(2, 28, 28, dtype=torch.float64).requires_grad_()

    def logit_sum(context):
        params = {**model_params(model), "context": context}
        return torch.func.functional_call(model, params, (x,))[:, 0].sum()

    (grad,) = torch.autograd.grad(logit_sum(z), [z])
    for pixel in ((0, 14, 14), (1, 9, 20)):
        shifted = {}
        for sign in (1, -1):
            q = z.detach().clone()
            q[pixel] += sign * 1e-6
            shifted[sign] = logit_sum(q).item()
        numeric = (shifted[1] - shifted[-1]) / 2e-6
        assert abs(numeric) > 1e-4
        assert grad[pixel].item() == pytest.approx(numeric, rel=1e-6)
    per_pixel = grad.abs().sum(dim=(1, 2))  # what changing z pixel by pixel can do
    constant = grad.sum(dim=(1, 2)).abs()  # the derivative along z + c (every pixel)
    assert (per_pixel > 1).all()
    assert (constant < 0.05 * per_pixel).all()


def test_conv_context_adapts_only_z_per_task_and_its_meta_gradient_is_exact():
    torch.manual_seed(0)
    model = ConvNet(3, filters=2, context_dim=1, image_size=6).double()
    x = torch.rand(2, 6, 1, 6, 6, dtype=torch.float64)
    y = torch.tensor([[0, 1, 2, 0, 1, 2], [2, 0, 1, 1, 2, 0]])
    batch = TaskBatch(x[:, :3], y[:, :3], x[:, 3:], y[:, 3:])
    inner = InnerLoop("cross_entropy", steps=2, step_size=0.4, names=("context",))
    params = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    adapted = adapt_on_support(model, params, batch.support_x, batch.support_y, inner)
    assert adapted["context"].shape == (2, 1, 6, 6)  # one image-shaped z per task
    assert all(adapted[n] is params[n] for n in params if n != "context")
    assert (adapted["context"][0] - adapted["context"][1]).abs().max() > 1e-4
    loss = meta_loss(model, params, batch, inner)
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    some = ("context", "features.0.1.weight", "features.2.0.bias", "head.bias")
    expected = finite_difference_gradient(
        lambda p: meta_loss(model, {**params, **p}, batch, inner), {n: params[n] for n in some}
    )
    assert expected["context"].abs().max() > 1e-4
    for name, numeric in expected.items():
        torch.testing.assert_close(grads[name], numeric, rtol=1e-5, atol=1e-8, msg=name)


def test_first_order_gradient_is_the_query_gradient_at_the_adapted_parameters():
    model, batch = tiny_regression(1)
    params = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    exact = InnerLoop("mse", steps=1, step_size=0.1)
    first = InnerLoop("mse", steps=1, step_size=0.1, first_order=True)
    g_exact = torch.autograd.grad(meta_loss(model, params, batch, exact), list(params.values()))
    g_first = torch.autograd.grad(meta_loss(model, params, batch, first), list(params.values()))
    # first order: the mean over tasks of grad L_query(theta'_i) with theta'_i held fixed
    adapted = adapt_on_support(model, params, batch.support_x, batch.support_y, first)
    expected = [torch.zeros_like(p) for p in params.values()]
    for task in range(batch.num_tasks):
        fixed = {n: adapted[n][task].detach().requires_grad_() for n in params}
        one = batch.select(task, task + 1)
        query = torch.func.functional_call(model, fixed, (one.query_x[0],))
        loss = (query - one.query_y[0]).pow(2).mean() / batch.num_tasks
        for total, g in zip(expected, torch.autograd.grad(loss, list(fixed.values()))):
            total += g
    for a, b in zip(g_first, expected):
        torch.testing.assert_close(a, b)
    differences = [(a - b).abs().max().item() for a, b in zip(g_exact, g_first)]
    assert max(differences) > 1e-3  # the second-order terms matter


def test_inner_step_adapts_each_task_with_its_own_gradient():
    model, batch = tiny_regression(2)
    params = dict(model.named_parameters())
    inner = InnerLoop("mse", steps=1, step_size=0.05)
    adapted = adapt_on_support(model, params, batch.support_x, batch.support_y, inner)
    for task in range(batch.num_tasks):
        out = torch.func.functional_call(model, params, (batch.support_x[task],))
        loss = (out - batch.support_y[task]).pow(2).mean()
        grads = torch.autograd.grad(loss, list(params.values()))
        for (name, p), g in zip(params.items(), grads):
            torch.testing.assert_close(adapted[name][task], p - 0.05 * g)


def test_vmap_and_loop_give_the_same_conv_meta_gradient():
    torch.manual_seed(0)
    model = ConvNet(3, filters=4).double()
    x = torch.rand(3, 6, 1, 28, 28, dtype=torch.float64)
    y = torch.arange(3).repeat(2).expand(3, 6)
    batch = TaskBatch(x[:, :3], y[:, :3], x[:, 3:], y[:, 3:])
    params = model_params(model)
    grads = []
    for use_vmap in (True, False):
        inner = InnerLoop("cross_entropy", steps=2, step_size=0.4, use_vmap=use_vmap)
        loss = meta_loss(model, params, batch, inner)
        grads.append(torch.autograd.grad(loss, list(params.values())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_batch_norm_uses_each_tasks_own_batch_statistics():
    torch.manual_seed(0)
    model = ConvNet(5)
    assert not list(model.buffers())  # no running statistics to leak between tasks
    x = torch.rand(2, 10, 1, 28, 28)
    params = model_params(model)
    both = batched_forward(model, params, x)
    alone = batched_forward(model, params, x[:1])
    changed = batched_forward(model, params, torch.cat([x[:1], 5 * x[1:] + 1]))
    torch.testing.assert_close(both[0], alone[0])
    torch.testing.assert_close(changed[0], alone[0])
    # the statistics are the batch's own: normalizing is invariant to an affine input shift
    first = model.features[0][1]
    h = torch.nn.functional.conv2d(x[0], model.features[0][0].weight, None, 2, 1)
    normalized = first(h)
    torch.testing.assert_close(normalized.mean(dim=(0, 2, 3)), first.bias, atol=1e-5, rtol=0)
    model.eval()  # even in eval mode: batch statistics, as in the paper's implementation
    torch.testing.assert_close(batched_forward(model, params, x[:1])[0], alone[0])


def test_query_curve_matches_plain_gradient_descent():
    model, batch = tiny_regression(3)
    params = dict(model.named_parameters())
    curve = query_curve(model, params, [batch], InnerLoop("mse", steps=2, step_size=0.1))
    current = {n: p.detach().clone().requires_grad_() for n, p in params.items()}
    task = 1
    for step in range(3):
        query = torch.func.functional_call(model, current, (batch.query_x[task],))
        assert curve.losses[step, task] == pytest.approx(
            (query - batch.query_y[task]).pow(2).mean().item(), rel=1e-10
        )
        out = torch.func.functional_call(model, current, (batch.support_x[task],))
        loss = (out - batch.support_y[task]).pow(2).mean()
        grads = torch.autograd.grad(loss, list(current.values()))
        current = {
            n: (p - 0.1 * g).detach().requires_grad_() for (n, p), g in zip(current.items(), grads)
        }
    assert curve.accuracies is None


def test_multitask_regressors_train_independently_and_average():
    torch.manual_seed(0)
    model = SinusoidMLP(1, [8])
    stacks = []
    for use_vmap in (True, False):
        regressors = MultitaskRegressors(
            model, np.random.default_rng(0), 3, 0.01, use_vmap=use_vmap
        )
        for step in range(3):
            regressors.step(np.random.default_rng(step), 20)
        stacks.append(regressors)
    for name in stacks[0].stack:
        torch.testing.assert_close(stacks[0].stack[name], stacks[1].stack[name])
        torch.testing.assert_close(stacks[0].average()[name], stacks[0].stack[name].mean(0))
    # the regressors start from different initializations and fit different sinusoids
    first = stacks[0].stack["net.0.weight"]
    assert not torch.allclose(first[0], first[1])


def test_tune_eval_lr_picks_the_lowest_fine_tuned_loss():
    model, tasks = tiny_regression(4)
    batch = TaskBatch(tasks.support_x, tasks.support_y, tasks.support_x, tasks.support_y)
    params = dict(model.named_parameters())
    inner = InnerLoop("mse", steps=3, step_size=0.0)
    grid = [1e-4, 0.01, 0.03, 1e4]
    chosen, scores = tune_eval_lr(model, params, [batch], inner, grid)
    assert scores[1e4] > 1e6  # diverged
    assert chosen == min(scores, key=scores.get) and chosen in (0.01, 0.03)
