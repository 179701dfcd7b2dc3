"""The inner loop: REINFORCE loss and differentiable adaptation of the policy to each task.

`adapt` takes the meta-parameters theta (one shared dict) and returns the adapted
parameters theta'_i of every task as one dict of stacked tensors [T, ...]. The
per-task gradients come from one backward pass: theta is expanded to a [T, ...]
stack and the sum of the task losses is differentiated with respect to the
stack, each slice receiving its own task's gradient. With `first_order=False` the
gradient keeps its graph (`create_graph=True`), so differentiating a loss of
theta' with respect to theta is the second-order MAML gradient. The stacking and the
gradient step are `metarl.params`'s, shared with supervised MAML.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from metarl.episodes import Rollouts
from metarl.params import Params, gradient_step, stack_params
from metarl.policies import gaussian_log_prob, policy_outputs


def reinforce_loss(policy: nn.Module, params: Params, rollouts: Rollouts) -> torch.Tensor:
    """-mean over valid steps of log pi(a|s) * A, one value per task: [T]."""
    mean, log_std = policy_outputs(policy, params, rollouts.step_observations)
    log_probs = gaussian_log_prob(mean, log_std, rollouts.step_actions)
    count = rollouts.step_mask.sum(-1).clamp(min=1.0)
    return -(log_probs * rollouts.step_advantages).sum(-1) / count


def adapt(
    policy: nn.Module,
    params: Params,
    batches: Sequence[Rollouts],
    step_sizes: Sequence[float],
    first_order: bool = False,
    adapted_names: Iterable[str] | None = None,
    stacked: bool = False,
) -> Params:
    """theta'_i after one gradient step per batch in `batches` (inner step k uses batches[k]).

    params: shared theta, or a per-task stack if `stacked`. step_sizes: one per inner step.
    adapted_names: the parameters the inner loop changes (default: all); the others stay
    shared theta. Returns the adapted parameters as per-task stacks [T, ...] (and `params`
    itself when there are no inner steps), differentiable with respect to `params`.
    """
    if len(step_sizes) < len(batches):
        raise ValueError(f"{len(batches)} inner steps need as many step sizes, got {step_sizes}")
    if not batches:
        return params  # no inner step: every task uses theta itself
    names = list(params) if adapted_names is None else list(adapted_names)
    unknown = sorted(set(names) - set(params))
    if unknown:
        raise ValueError(f"cannot adapt unknown parameters {unknown}; parameters: {sorted(params)}")
    with torch.enable_grad():  # the inner gradient is needed even under no_grad
        if stacked:
            current = dict(params)
        else:  # only the adapted parameters become per-task stacks; the rest stay shared
            stacks = stack_params({n: params[n] for n in names}, batches[0].num_tasks)
            current = {**params, **stacks}
        for batch, step_size in zip(batches, step_sizes):
            loss = reinforce_loss(policy, current, batch).sum()
            current = gradient_step(current, loss, names, step_size, first_order)
    return current


def inner_step_norm(theta: Params, adapted: Params) -> float:
    """Mean over tasks of the norm of theta'_i - theta (0 without inner steps)."""
    if adapted is theta:
        return 0.0
    squares = sum(
        ((adapted[name] - p).reshape(adapted[name].shape[0], -1) ** 2).sum(-1)
        for name, p in theta.items()
        if adapted[name].dim() > p.dim()  # adapted parameters are per-task stacks
    )
    return float(torch.as_tensor(squares).sqrt().mean())
