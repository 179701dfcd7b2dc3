"""Meta-validation of a supervised run: fixed validation tasks, their query loss (and
accuracy) before and after the inner loop, the score that picks best.pt, and the
fine-tuning step size stored with a checkpoint."""

from __future__ import annotations

import math

import numpy as np
from torch import nn

from metarl.supervised.comparisons import tune_eval_lr
from metarl.supervised.config import SupervisedConfig
from metarl.supervised.maml import query_curve
from metarl.supervised.models import model_params
from metarl.supervised.problems import TaskSampler, evaluation_inner_loop
from metarl.supervised.tasks import TaskBatch


def validation_batches(sampler: TaskSampler, config: SupervisedConfig) -> list[TaskBatch]:
    """The fixed meta-validation tasks of a run (validation stream of the run seed)."""
    chunk = config.task_chunk or config.meta_batch_size
    return sampler.batches(
        "val", config.seed, config.val_tasks, config.shots, config.query_to_evaluate, chunk
    )


def validate(model: nn.Module, batches: list[TaskBatch], config: SupervisedConfig) -> dict:
    """Query loss (and accuracy) of validation tasks before and after the training inner loop."""
    inner = evaluation_inner_loop(config, config.inner_lr, config.inner_steps)
    curve = query_curve(model, model_params(model), batches, inner)
    row = {"val_loss_pre": float(curve.losses[0].mean()), "val_loss_post": _last(curve.losses)}
    if curve.accuracies is not None:
        row["val_accuracy_pre"] = float(curve.accuracies[0].mean())
        row["val_accuracy_post"] = _last(curve.accuracies)
    return row


def _last(values: np.ndarray) -> float:
    return float(values[-1].mean())


def validation_score(config: SupervisedConfig, row: dict) -> float:
    """Higher is better: post-adaptation accuracy / -loss (pre-adaptation for the comparisons)."""
    phase = "post" if config.meta_learned else "pre"
    if config.problem == "omniglot":
        return row[f"val_accuracy_{phase}"]
    value = row[f"val_loss_{phase}"]
    return -value if math.isfinite(value) else -math.inf


def eval_step_size(model: nn.Module, batches: list[TaskBatch], config: SupervisedConfig):
    """The fine-tuning step size for test time, and the tuning scores where it was tuned."""
    if config.meta_learned or config.algorithm == "oracle":
        return config.inner_lr, {}
    inner = evaluation_inner_loop(config, config.inner_lr, config.eval_steps)
    return tune_eval_lr(model, model_params(model), batches, inner, config.lr_grid)


def validation_columns(config: SupervisedConfig) -> list[str]:
    """The metrics.csv columns `validate` fills."""
    columns = ["val_loss_pre", "val_loss_post"]
    if config.problem == "omniglot":
        columns += ["val_accuracy_pre", "val_accuracy_post"]
    return columns
