"""Functional parameters: named tensors passed to `torch.func.functional_call`.

Both halves of metarl adapt a network without touching its modules: parameters are a
`Params` dict (shared theta, or per-task stacks [T, ...] of adapted parameters), and an
inner step is `gradient_step` on the sum of the tasks' losses. Used by the policy
gradient inner loop (`metarl.inner`) and by supervised MAML (`metarl.supervised.maml`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

Params = dict[str, torch.Tensor]


class NonFiniteError(ValueError):
    """Training produced NaN or inf (a step size too large, usually); the message names the key."""


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """True if every element of every tensor is finite."""
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def stack_params(params: Params, num_tasks: int) -> Params:
    """Expand shared parameters to a per-task stack [T, ...] (a view, still a function of theta)."""
    return {name: p.unsqueeze(0).expand(num_tasks, *p.shape) for name, p in params.items()}


def gradient_step(
    params: Params, loss: torch.Tensor, names: list[str], step_size: float, first_order: bool
) -> Params:
    """params with params[n] - step_size * d loss / d params[n] for each n in `names`.

    The gradient keeps its graph unless `first_order`, so the result stays differentiable
    to second order. A sum of per-task losses over per-task stacks gives each task its
    own gradient.
    """
    with torch.enable_grad():
        grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=not first_order)
    updated = dict(params)
    for name, grad in zip(names, grads):
        updated[name] = params[name] - step_size * grad
    return updated
