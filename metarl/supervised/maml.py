"""MAML for supervised losses: the inner loop on support sets, the meta-loss on query sets.

All tasks of a batch are adapted together: the adapted parameters become per-task
stacks [T, ...] (`metarl.params.stack_params`), the tasks' outputs come from one
batched call (`batched_forward`, vmap by default), and each inner step is
`metarl.params.gradient_step` on the sum of the task losses, which gives every
slice of the stack its own task's gradient. Second-order by default (the inner
gradient keeps its graph); `first_order` drops the inner gradient's graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metarl.params import Params, gradient_step, stack_params
from metarl.supervised.models import batched_forward
from metarl.supervised.tasks import TaskBatch

LOSSES = ("mse", "cross_entropy")


@dataclass(frozen=True)
class InnerLoop:
    """How a task is adapted: `steps` gradient steps of size `step_size` on its support set.

    names: the parameters the inner loop changes (None: all; empty: none, e.g. the oracle).
    """

    loss: str
    steps: int
    step_size: float
    first_order: bool = False
    names: tuple[str, ...] | None = None
    use_vmap: bool = True

    def adapted_names(self, params: Params) -> list[str]:
        return list(params) if self.names is None else list(self.names)


def task_losses(outputs: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor:
    """One loss per task [T]: mean squared error, or mean cross-entropy of logits [T, n, C]."""
    if loss == "mse":
        return (outputs - targets).pow(2).flatten(1).mean(1)
    if loss == "cross_entropy":
        per_example = F.cross_entropy(outputs.flatten(0, 1), targets.flatten(), reduction="none")
        return per_example.view(targets.shape).mean(1)
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")


def task_accuracies(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of correctly classified query examples of each task [T]."""
    return (logits.argmax(-1) == labels).float().mean(1)


def adapt_on_support(
    model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, inner: InnerLoop
) -> Params:
    """theta'_i after `inner.steps` steps on each task's support set (x [T, n, ...], y).

    The adapted names come back as per-task stacks [T, ...]; the others are theta itself.
    The result is differentiable with respect to `params` (to second order unless
    `inner.first_order`).
    """
    names = inner.adapted_names(params)
    if not names or inner.steps == 0:
        return dict(params)
    current = {**params, **stack_params({n: params[n] for n in names}, x.shape[0])}
    for _ in range(inner.steps):
        outputs = batched_forward(model, current, x, names, inner.use_vmap)
        loss = task_losses(outputs, y, inner.loss).sum()
        current = gradient_step(current, loss, names, inner.step_size, inner.first_order)
    return current


def query_losses(
    model: nn.Module, params: Params, batch: TaskBatch, inner: InnerLoop
) -> tuple[torch.Tensor, torch.Tensor]:
    """Query losses [T] after adapting to the support sets, and the query outputs.

    The mean of these losses is the MAML meta-objective; its gradient with respect to
    `params` is the meta-gradient.
    """
    adapted = adapt_on_support(model, params, batch.support_x, batch.support_y, inner)
    stacked = [n for n in inner.adapted_names(params) if inner.steps > 0]
    outputs = batched_forward(model, adapted, batch.query_x, stacked, inner.use_vmap)
    return task_losses(outputs, batch.query_y, inner.loss), outputs


@dataclass
class QueryCurve:
    """Per-task query metrics after 0, 1, ..., k steps: losses [k+1, T], accuracies or None."""

    losses: np.ndarray
    accuracies: np.ndarray | None


def query_curve(
    model: nn.Module, params: Params, batches: Sequence[TaskBatch], inner: InnerLoop
) -> QueryCurve:
    """Query loss (and accuracy for classification) of every task after each inner step.

    Fine-tuning at test time: plain gradient steps on the support set, no meta-gradient
    (so no graph is kept between steps). `batches` are chunks of the tasks, processed
    one after another to bound memory.
    """
    losses, accuracies = [], []
    names = inner.adapted_names(params)
    for batch in batches:
        T = batch.num_tasks
        current = {n: p.detach() for n, p in params.items()}
        if names:
            current.update(stack_params({n: current[n] for n in names}, T))
        chunk_losses, chunk_accuracies = [], []
        for step in range(inner.steps + 1):
            with torch.no_grad():
                out = batched_forward(model, current, batch.query_x, names, inner.use_vmap)
                chunk_losses.append(task_losses(out, batch.query_y, inner.loss))
                if inner.loss == "cross_entropy":
                    chunk_accuracies.append(task_accuracies(out, batch.query_y))
            if step == inner.steps or not names:
                continue
            current = {
                n: (p.detach().requires_grad_() if n in names else p) for n, p in current.items()
            }
            out = batched_forward(model, current, batch.support_x, names, inner.use_vmap)
            loss = task_losses(out, batch.support_y, inner.loss).sum()
            current = gradient_step(current, loss, names, inner.step_size, first_order=True)
        losses.append(torch.stack(chunk_losses).cpu().numpy())
        if chunk_accuracies:
            accuracies.append(torch.stack(chunk_accuracies).cpu().numpy())
    return QueryCurve(
        np.concatenate(losses, axis=1),
        np.concatenate(accuracies, axis=1) if accuracies else None,
    )
