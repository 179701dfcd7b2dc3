"""The comparison methods (the paper's non-MAML "baselines") and their fine-tuning step size.

- pretrain: one network regressing all tasks' points at once ("pretrained on all
  tasks"), fine-tuned at test time with a tuned step size.
- oracle: the same, with each task's amplitude and phase as extra inputs (an upper
  bound; it has nothing to adapt).
- multitask (appendix C.1): many regressors, each trained on its own sinusoid,
  whose parameters are averaged, then fine-tuned with a tuned step size. Here the
  regressors are trained together as one stack of parameters with Adam, which is
  elementwise and so the same as separate Adam runs; optional L2 regularization
  toward zero ("l2") or toward the regressors' current mean ("mean").
The context vector (appendix C.2) is MAML's training loop adapting only z,
see `models.py` and `problems.adapted_names`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from metarl.params import NonFiniteError, Params, all_finite
from metarl.supervised.maml import InnerLoop, query_curve, task_losses
from metarl.supervised.models import batched_forward
from metarl.supervised.tasks import TaskBatch, sample_sinusoid_params, sinusoid_points


def checked_step(optimizer: torch.optim.Optimizer, loss: float) -> None:
    """`optimizer.step()` if the loss and every gradient are finite, else NonFiniteError
    with the parameters unchanged; NonFiniteError too if the step made them non-finite."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grads = [p.grad for p in params if p.grad is not None]
    if not math.isfinite(loss) or not all_finite(grads):
        what = "loss" if not math.isfinite(loss) else "gradient"
        raise NonFiniteError(f"the training {what} is not finite (loss {loss:g})")
    optimizer.step()
    if not all_finite(params):
        raise NonFiniteError(f"the parameters are not finite after a step (loss {loss:g})")


def all_points_loss(
    model: nn.Module, params: Params, batch: TaskBatch, loss: str, use_vmap: bool = True
) -> torch.Tensor:
    """Mean loss of the shared parameters on every point (support and query) of every task."""
    x = torch.cat([batch.support_x, batch.query_x], dim=1)
    y = torch.cat([batch.support_y, batch.query_y], dim=1)
    return task_losses(batched_forward(model, params, x, (), use_vmap), y, loss).mean()


class MultitaskRegressors:
    """`count` regressors with `model`'s architecture, each fitted to its own sinusoid.

    They are initialized and their points drawn on the CPU (the same numbers on every
    device), then held and trained on `device`.
    """

    def __init__(
        self,
        model: nn.Module,
        rng: np.random.Generator,
        count: int,
        lr: float,
        regularization: str = "none",
        weight: float = 0.0,
        use_vmap: bool = True,
        device: torch.device | str = "cpu",
    ):
        self.model, self.device = model, torch.device(device)
        self.task_params = sample_sinusoid_params(rng, count)
        self.regularization, self.weight, self.use_vmap = regularization, weight, use_vmap
        generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
        self.stack = {}  # each regressor initialized independently, like the model's layers
        for name, p in model.named_parameters():
            fresh = []
            for _ in range(count):
                values = torch.empty_like(p, device="cpu")
                if p.dim() > 1:
                    nn.init.kaiming_uniform_(values, a=5**0.5, generator=generator)
                else:
                    bound = 1 / p.numel() ** 0.5
                    nn.init.uniform_(values, -bound, bound, generator=generator)
                fresh.append(values)
            self.stack[name] = torch.stack(fresh).to(self.device).requires_grad_()
        self.optimizer = torch.optim.Adam(self.stack.values(), lr=lr)

    def step(self, rng: np.random.Generator, num_points: int) -> float:
        """One Adam step of every regressor on fresh points of its sinusoid; mean MSE."""
        x, y = (t.to(self.device) for t in sinusoid_points(rng, self.task_params, num_points))
        outputs = batched_forward(self.model, self.stack, x, self.stack, self.use_vmap)
        losses = task_losses(outputs, y, "mse")
        total = losses.sum()
        if self.regularization != "none" and self.weight > 0:
            for p in self.stack.values():
                anchor = 0 if self.regularization == "l2" else p.mean(0, keepdim=True).detach()
                total = total + self.weight * (p - anchor).pow(2).flatten(1).sum(1).sum()
        self.optimizer.zero_grad()
        total.backward()
        loss = losses.mean().item()
        checked_step(self.optimizer, loss)
        return loss

    def average(self) -> Params:
        """The mean parameter vector over the regressors."""
        return {name: p.detach().mean(0) for name, p in self.stack.items()}


def tune_eval_lr(
    model: nn.Module,
    params: Params,
    batches: Sequence[TaskBatch],
    inner: InnerLoop,
    grid: Sequence[float],
) -> tuple[float, dict[float, float]]:
    """The step size of `grid` with the lowest mean query loss over fine-tuning steps 1..k.

    Scored on held-out (meta-validation) tasks; a step size that diverges scores inf.
    Returns the choice and every step size's score.
    """
    scores = {}
    for step_size in grid:
        curve = query_curve(model, params, batches, replace(inner, step_size=step_size))
        score = float(np.mean(curve.losses[1:]))
        scores[step_size] = score if np.isfinite(score) else float("inf")
    return min(scores, key=scores.get), scores
