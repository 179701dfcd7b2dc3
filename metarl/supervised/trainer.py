"""The supervised training loop: MAML (or a comparison method) on sinusoids or Omniglot.

A run directory holds the resolved `config.yaml`, `metrics.csv` (one row per logging
interval; the same scalars in TensorBoard under `tensorboard/`), `checkpoint.pt` (the
latest finite parameters: periodically, at the end, on Ctrl-C, SIGTERM or divergence) and
`best.pt` (the parameters with the best meta-validation score). Both carry the step
size to fine-tune with at test time (`eval_lr`): the inner step size for MAML and
the context vector, tuned on meta-validation tasks for the pretrained and
multi-task comparisons. The model and every step run on `device`; tasks are drawn on the
CPU, each batch moved once (no copy on the CPU); checkpoints hold CPU tensors.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from metarl.checkpoints import save_checkpoint
from metarl.config_validation import config_to_yaml
from metarl.metrics import MetricsLogger
from metarl.params import NonFiniteError, all_finite
from metarl.run_dir import RunDirLock, new_run_dir, write_text_file
from metarl.runtime import (
    check_fits_in_memory,
    keep_freed_memory,
    learner_device,
    raise_lost_stop,
    set_torch_threads,
    signals_deferred,
    stop_on_signals,
    to_cpu,
)
from metarl.supervised.comparisons import (
    MultitaskRegressors,
    all_points_loss,
    checked_step,
)
from metarl.supervised.config import SupervisedConfig
from metarl.supervised.maml import query_losses
from metarl.supervised.models import model_params
from metarl.supervised.problems import (
    STREAMS,
    TaskSampler,
    build_model,
    loss_name,
    make_task_sampler,
    memory_estimate,
    training_inner_loop,
)
from metarl.supervised.tasks import TaskBatch, seeded_rng
from metarl.supervised.validation import (
    eval_step_size,
    validate,
    validation_batches,
    validation_columns,
    validation_score,
)

CHECKPOINT_KIND = "supervised"


def chunks(batch: TaskBatch, size: int) -> list[TaskBatch]:
    """The batch cut into pieces of at most `size` tasks (0: the whole batch)."""
    size = size or batch.num_tasks
    return [batch.select(s, s + size) for s in range(0, batch.num_tasks, size)]


def adam_meta_step(
    model: nn.Module,
    batch: TaskBatch,
    config: SupervisedConfig,
    optimizer: torch.optim.Optimizer,
) -> dict[str, float]:
    """One Adam step on the MAML meta-objective (mean post-adaptation query loss)."""
    params = model_params(model)
    inner = training_inner_loop(config)
    optimizer.zero_grad()
    losses, accuracies = [], []
    for part in chunks(batch, config.task_chunk):
        task_losses, outputs = query_losses(model, params, part, inner)
        (task_losses.sum() / batch.num_tasks).backward()
        losses.append(task_losses.detach())
        if inner.loss == "cross_entropy":
            accuracies.append((outputs.argmax(-1) == part.query_y).float().mean(1))
    stats = {"loss_post": torch.cat(losses).mean().item()}
    checked_step(optimizer, stats["loss_post"])
    if accuracies:
        stats["accuracy_post"] = torch.cat(accuracies).mean().item()
    return stats


def all_points_step(
    model: nn.Module, batch: TaskBatch, config: SupervisedConfig, optimizer
) -> dict[str, float]:
    """One Adam step of the pretrained/oracle comparison on all points of the meta-batch."""
    optimizer.zero_grad()
    loss = all_points_loss(model, model_params(model), batch, loss_name(config), config.vmap)
    loss.backward()
    checked_step(optimizer, loss.item())
    return {"loss": loss.item()}


def supervised_checkpoint_payload(
    model: nn.Module, config: SupervisedConfig, iteration: int, step_size: float, scores, optimizer
) -> dict:
    """What best.pt and checkpoint.pt hold: parameters, config, the step size to fine-tune with
    (CPU copies of the tensors wherever the model runs: any machine loads the file)."""
    return {
        "kind": CHECKPOINT_KIND,
        "config": dataclasses.asdict(config),
        "model_state": to_cpu(model.state_dict()),
        "iteration": iteration,
        "eval_lr": step_size,
        "lr_scores": scores,
        "optimizer_state": to_cpu(optimizer.state_dict()),
    }


def train_supervised(config: SupervisedConfig, run_dir: Path, show_progress: bool = True) -> Path:
    """Meta-train MAML (or train a comparison method) into `run_dir`, from scratch; returns it.

    Ctrl-C or SIGTERM writes checkpoint.pt and re-raises; a non-finite loss, gradient or
    parameter raises NonFiniteError, checkpoint.pt holding the last finite parameters.
    """
    device = learner_device(config.device)  # cuda without CUDA: refused before any work
    sampler = make_task_sampler(config)  # a bad data path fails before the run dir is made
    check_fits_in_memory(
        memory_estimate(config),
        "meta-training's tasks, activations and parameters",
        "meta_batch_size, shots, query, val_tasks, hidden_sizes or multitask_models",
    )
    run_dir = new_run_dir(run_dir)
    with RunDirLock(run_dir):
        write_text_file(run_dir / "config.yaml", config_to_yaml(config))
        keep_freed_memory()
        set_torch_threads(config.torch_threads)
        return _train(config, sampler, run_dir, show_progress, device)


def _train(
    config: SupervisedConfig, sampler: TaskSampler, run_dir: Path, show_progress: bool, device
):
    model = build_model(config).to(device)  # initialized on the CPU: the same on every device
    val_batches = [batch.on(device) for batch in validation_batches(sampler, config)]
    multitask = None
    if config.algorithm == "multitask":
        rng = seeded_rng(config.seed, STREAMS["multitask"])
        multitask = MultitaskRegressors(
            model,
            rng,
            config.multitask_models,
            config.meta_lr,
            config.multitask_reg,
            config.multitask_reg_weight,
            config.vmap,
            device,
        )
        optimizer = multitask.optimizer
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.meta_lr)

    def save(name: str, done: int, step_size: float = config.inner_lr, scores=None) -> None:
        payload = supervised_checkpoint_payload(
            model, config, done, step_size, scores or {}, optimizer
        )
        save_checkpoint(run_dir / name, payload)

    logger = MetricsLogger(run_dir)
    best_score, best_state, best_iteration = -math.inf, None, 0
    tasks_per_step = config.multitask_models if multitask else config.meta_batch_size
    train_s, window, start, done, saved = 0.0, [], time.perf_counter(), 0, None
    final_state = None
    progress = tqdm(range(config.iterations), desc="iterations", disable=not show_progress)
    try:
        with stop_on_signals():
            for iteration in progress:
                raise_lost_stop()  # a stop whose exception something swallowed stops here
                # A stop waits for the iteration's end: torch.func.functional_call swaps
                # tensors into the model while it runs, and Adam updates one tensor at a
                # time, so a stop raised inside a step leaves a model that is neither this
                # iteration's nor the last (seen: a Ctrl-C inside a vmapped forward left
                # vmap's tensors in the model, and the checkpoint could not be written).
                with signals_deferred():
                    rng = seeded_rng(config.seed, STREAMS["train"], iteration)
                    clock = time.perf_counter()
                    if multitask:
                        stats = {"loss": multitask.step(rng, config.multitask_batch)}
                    else:
                        batch = sampler.sample(
                            "train", rng, config.meta_batch_size, config.shots, config.query
                        ).on(device)
                        step = adam_meta_step if config.meta_learned else all_points_step
                        stats = step(model, batch, config, optimizer)
                    train_s += time.perf_counter() - clock
                    window.append(stats)
                    done = iteration + 1
                    validating = done % config.val_interval == 0 or done == config.iterations
                    if not (validating or done % config.log_interval == 0):
                        continue
                    if multitask:
                        _load(model, multitask.average())
                    row = {
                        "iteration": done,
                        "tasks": done * tasks_per_step,
                        "wall_s": time.perf_counter() - start,
                        "tasks_per_s": done * tasks_per_step / train_s,
                        **{key: float(np.mean([s[key] for s in window])) for key in window[0]},
                        **dict.fromkeys(validation_columns(config), math.nan),
                    }
                    window = []
                    if validating:
                        row.update(validate(model, val_batches, config))
                        score = validation_score(config, row)
                        if best_state is None or score > best_score:
                            best_score, best_iteration = score, done
                            best_state = to_cpu(model.state_dict())
                            save("best.pt", done)
                    logger.log(row)
                    shown = {k: f"{v:.3g}" for k, v in row.items() if k.startswith("val")}
                    progress.set_postfix(shown)
                    if done % config.checkpoint_interval == 0 and done < config.iterations:
                        save("checkpoint.pt", done)
                        saved = done
            with signals_deferred():  # the final writes are not cut short either
                final_state = to_cpu(model.state_dict())
                for name, state, iteration in (
                    ("best.pt", best_state, best_iteration),
                    ("checkpoint.pt", final_state, config.iterations),
                ):
                    model.load_state_dict(state)
                    save(name, iteration, *eval_step_size(model, val_batches, config))
                saved = config.iterations
    except (KeyboardInterrupt, NonFiniteError) as stop:  # keep the last finite parameters
        with stop_on_signals(already_stopping=True):  # more Ctrl-Cs cannot cut this short
            progress.close()
            if saved != config.iterations:  # else the stop came once the final writes were done
                if final_state is not None:  # failed while tuning or saving at the end
                    model.load_state_dict(final_state)
                if all_finite(multitask.stack.values() if multitask else model.parameters()):
                    if multitask:
                        _load(model, multitask.average())
                    save("checkpoint.pt", done)
                    saved = done
            kept = "no checkpoint" if saved is None else f"checkpoint written at iteration {saved}"
            if isinstance(stop, NonFiniteError):
                print(f"\nstopped: non-finite values; {kept}", flush=True)
                advice = config.divergence_advice(first_step=done == 0)
                raise NonFiniteError(
                    f"iteration {done + 1}: {stop}; {advice} ({kept}: {run_dir / 'checkpoint.pt'})"
                ) from None
            print(
                f"\n{getattr(stop, 'reason', 'interrupted')}; {kept} (for metarl eval)", flush=True
            )
            stop.reported = True  # the command adds nothing
        raise
    finally:
        progress.close()
        logger.close()
    return run_dir


def _load(model: nn.Module, params: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.copy_(params[name])
