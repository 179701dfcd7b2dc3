"""Test-time evaluation: fine-tune on held-out tasks, report the query metric after each step.

Held-out tasks are the meta-test classes for Omniglot and the test stream of
sinusoids (never used in training or validation). Each task's support set is used
for `steps` plain gradient steps of the checkpoint's `eval_lr`; after 0, 1, ..., k
steps the query MSE (sinusoid) or accuracy (Omniglot) of every task is recorded and
summarized as a mean with a 95% confidence interval over tasks (1.96 standard errors).
The model and the task batches are on the evaluation's device (`metarl eval --device`, else
the run's `device`); tasks are drawn on the CPU and moved once per batch.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import torch

from metarl.checkpoints import CheckpointError
from metarl.config_validation import ConfigError, config_from_dict
from metarl.run_dir import writable_dir, write_text_file, writing
from metarl.runtime import keep_freed_memory, learner_device, set_torch_threads
from metarl.supervised.config import SupervisedConfig
from metarl.supervised.maml import query_curve
from metarl.supervised.models import model_params
from metarl.supervised.problems import build_model, evaluation_inner_loop, make_task_sampler

REQUIRED_KEYS = ("config", "model_state", "eval_lr", "iteration")


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of its 95% confidence interval (normal approximation)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float(values.mean()), math.nan
    return float(values.mean()), float(1.96 * values.std(ddof=1) / math.sqrt(len(values)))


def evaluate_model(
    model: torch.nn.Module,
    config: SupervisedConfig,
    step_size: float,
    tasks: int,
    steps: int,
    seed: int,
    shots: list[int] | None = None,
) -> list[dict]:
    """Rows {shots, step, metric, mean, ci95, tasks, diverged} after 0..steps fine-tuning steps.

    The tasks are moved to the device of `model`'s parameters. A task whose fine-tuning
    diverged (a non-finite loss) is counted in `diverged` and left out of the mean and
    confidence interval, which are over the remaining tasks.
    """
    sampler = make_task_sampler(config)
    inner = evaluation_inner_loop(config, step_size, steps)
    chunk = config.task_chunk or config.meta_batch_size
    device = next(model.parameters()).device
    rows = []
    for k in shots or config.shots_to_evaluate:
        batches = sampler.batches("test", seed, tasks, k, config.query_to_evaluate, chunk)
        batches = [batch.on(device) for batch in batches]
        curve = query_curve(model, model_params(model), batches, inner)
        metrics = {"mse" if config.problem == "sinusoid" else "loss": curve.losses}
        if curve.accuracies is not None:
            metrics["accuracy"] = curve.accuracies
        for metric, values in metrics.items():
            for step, per_task in enumerate(values):
                finite = per_task[np.isfinite(per_task)]
                mean, ci95 = mean_ci95(finite) if len(finite) else (math.nan, math.nan)
                rows.append(
                    {
                        "shots": k,
                        "step": step,
                        "metric": metric,
                        "mean": mean,
                        "ci95": ci95,
                        "tasks": tasks,
                        "diverged": tasks - len(finite),
                    }
                )
    return rows


def model_from_checkpoint(
    checkpoint: dict, source: str
) -> tuple[SupervisedConfig, torch.nn.Module]:
    """The config and trained network stored in a supervised checkpoint (on the CPU)."""
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{source}: not a supervised checkpoint (missing {missing})")
    config = config_from_dict(SupervisedConfig, checkpoint["config"], source)
    model = build_model(config)
    try:
        model.load_state_dict(checkpoint["model_state"])
    except RuntimeError as error:
        raise CheckpointError(
            f"{source}: parameters do not fit the config's model ({error})"
        ) from None
    return config, model


def evaluation_device(config: SupervisedConfig, requested: str | None) -> torch.device:
    """`metarl eval --device` where given, else the run's `device` key (checked here: a run
    trained on cuda, evaluated where there is none, says to pass --device cpu)."""
    if requested is not None:
        return learner_device(requested, "--device")
    try:
        return learner_device(config.device, "the run's key 'device'")
    except ConfigError as error:
        raise ConfigError(f"{error} (here: metarl eval --device cpu or auto)") from None


def format_query_table(config: SupervisedConfig, rows: list[dict]) -> str:
    """Markdown table: one line per (K, step), mean +- 95% CI of each metric."""
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    cells: dict[tuple[int, int], dict[str, str]] = {}
    for r in rows:
        if r["metric"] == "accuracy":
            text = f"{100 * r['mean']:.2f}% ± {100 * r['ci95']:.2f}"
        else:
            text = f"{r['mean']:.4f} ± {r['ci95']:.4f}"
        if r["diverged"]:
            text += f" ({r['diverged']} diverged)"
        cells.setdefault((r["shots"], r["step"]), {})[r["metric"]] = text
    lines = [
        f"{config.problem} {config.algorithm}: after k fine-tuning steps "
        f"(mean ± 95% CI over {rows[0]['tasks']} held-out tasks)",
        "| K | steps | " + " | ".join(metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for (shots, step), values in cells.items():
        lines.append(f"| {shots} | {step} | " + " | ".join(values[m] for m in metrics) + " |")
    return "\n".join(lines)


def evaluate_checkpoint(path: str | Path, checkpoint: dict, args) -> dict:
    """`metarl eval` for a supervised checkpoint: writes eval.json and eval.csv, prints a table.

    args: .tasks (default: config eval_tasks), .steps (default: eval_steps), .seed
    (default: the run seed; the test stream never overlaps training tasks), .out
    (default: the checkpoint's directory), .device (default: the run's `device`).
    """
    path = Path(path)
    config, model = model_from_checkpoint(checkpoint, str(path))
    device = evaluation_device(config, getattr(args, "device", None))
    model.to(device)
    keep_freed_memory()
    set_torch_threads(config.torch_threads)
    tasks = config.eval_tasks if args.tasks is None else args.tasks
    steps = config.eval_steps if args.steps is None else args.steps
    seed = config.seed if args.seed is None else args.seed
    if tasks < 2:
        raise ConfigError(f"--tasks must be >= 2 for a confidence interval, got {tasks}")
    if steps < 0 or seed < 0:
        raise ConfigError(f"--steps and --seed must be >= 0, got {steps} and {seed}")
    rows = evaluate_model(model, config, checkpoint["eval_lr"], tasks, steps, seed)
    out = Path(args.out) if args.out is not None else path.parent
    writable_dir(out)
    result = {
        "checkpoint": str(path),
        "problem": config.problem,
        "algorithm": config.algorithm,
        "iteration": checkpoint["iteration"],
        "eval_lr": checkpoint["eval_lr"],
        "seed": seed,
        "rows": rows,
    }
    write_text_file(out / "eval.json", json.dumps(result, indent=2))
    with writing(out / "eval.csv"), (out / "eval.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(format_query_table(config, rows))
    print(f"fine-tuning step size {checkpoint['eval_lr']}; written to {out / 'eval.json'}")
    return result
