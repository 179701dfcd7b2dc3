"""The training loop: run meta-iterations (`metarl.meta_iteration`), log, checkpoint; repeat.

A run directory holds the resolved `config.yaml`, `metrics.csv` (one row per
meta-iteration), TensorBoard event files under `tensorboard/`, `checkpoint.pt`
(every `checkpoint_every` iterations, at the end, and whenever the run stops:
Ctrl-C, SIGTERM, an error) and `best.pt` (the meta-parameters with the best
post-adaptation return so far). One process at a time holds a run directory
(see metarl.run_dir).

The four algorithms share this loop: `maml` and `context` adapt (all parameters,
or only the context vector z), `pretrain` and `oracle` take plain TRPO steps on
the rollouts of theta (no inner step), `oracle` on the env's oracle=True variant.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from metarl.checkpoints import save_checkpoint
from metarl.config import TrainConfig
from metarl.config_validation import config_to_yaml
from metarl.experiment import (
    check_memory,
)
from metarl.meta_iteration import Training
from metarl.metrics import MetricsLogger
from metarl.params import NonFiniteError
from metarl.policies import GaussianMLPPolicy, Params
from metarl.progress import TrainingProgress, sampler_ready, start_block
from metarl.resuming import BEST, CHECKPOINT, TrainingState, checkpoint_payload, resume_point
from metarl.run_dir import RunDirLock, existing_run_dir, new_run_dir, write_text_file
from metarl.runtime import StopRequested, raise_lost_stop, stop_on_signals


def train(config: TrainConfig, run_dir: Path, show_progress: bool = True) -> Path:
    """Meta-train from scratch into `run_dir`; returns the run directory."""
    check_memory(config)
    run_dir = new_run_dir(run_dir)
    with RunDirLock(run_dir):
        try:
            write_text_file(run_dir / "config.yaml", config_to_yaml(config))
            print(start_block(config, run_dir, TrainingState()), flush=True)
            training = _start(config, None, run_dir)
        except BaseException:  # refused before any iteration: leave the directory reusable
            (run_dir / "config.yaml").unlink(missing_ok=True)
            raise
        return run_training(training, run_dir, TrainingState(), show_progress)


def resume(run_dir: Path, overrides: dict | None = None, show_progress: bool = True) -> Path:
    """Continue the run in `run_dir` from its checkpoint, exactly as if never stopped.

    `overrides` may raise `iterations` and change the run settings (see metarl.resuming).
    """
    run_dir = existing_run_dir(run_dir)
    with RunDirLock(run_dir):
        point = resume_point(run_dir, overrides)
        if point.state.iteration >= point.config.iterations:
            print(f"{run_dir}: all {point.config.iterations} iterations done; nothing to resume")
            return run_dir
        print(start_block(point.config, run_dir, point.state), flush=True)
        training = _start(point.config, point.policy, run_dir)
        return run_training(training, run_dir, point.state, show_progress)


def _start(config: TrainConfig, policy: GaussianMLPPolicy | None, run_dir: Path) -> Training:
    """Build the training (its sampler starts Ray workers, if any) and say when they are up."""
    clock = time.perf_counter()
    training = Training(config, policy, run_dir)
    ready = sampler_ready(training.sampler, time.perf_counter() - clock)
    if ready is not None:
        print(ready, flush=True)
    return training


@dataclass(frozen=True)
class _Committed:
    """The last completed iteration: parameters and counters, replaced in one assignment."""

    params: Params
    state: TrainingState


def run_training(
    training: Training, run_dir: Path, state: TrainingState, show_progress: bool
) -> Path:
    """Iterations state.iteration .. config.iterations - 1, checkpointing as it goes."""
    config = training.config
    logger = MetricsLogger(run_dir, resume_from=state.iteration)
    committed = _Committed(
        {n: p.detach().clone() for n, p in training.policy.named_parameters()}, state
    )
    restarts_before = state.actor_restarts
    progress = TrainingProgress(config, state, show_progress)
    start = time.perf_counter() - state.wall_s

    def save(path: Path, snapshot: _Committed) -> None:
        save_checkpoint(path, checkpoint_payload(config, snapshot.params, snapshot.state))

    try:
        with stop_on_signals():
            for iteration in range(state.iteration, config.iterations):
                raise_lost_stop()  # a stop whose exception something swallowed stops here
                state = committed.state
                progress.start_iteration(iteration)
                new_params, row = training.run_iteration(iteration, state.env_steps, progress)
                restarts = restarts_before + getattr(training.sampler, "actor_restarts", 0)
                row = {"iteration": iteration, "wall_s": time.perf_counter() - start, **row}
                row["actor_restarts"] = restarts
                logger.log(row)
                score = training.score(row)
                if score > state.best_return:  # theta of this iteration scored best so far
                    best = TrainingState(
                        iteration, row["env_steps"], row["wall_s"], score, restarts
                    )
                    save(run_dir / BEST, _Committed(committed.params, best))
                training.commit(new_params)
                committed = _Committed(  # one assignment: a stop lands before or after it
                    new_params,
                    TrainingState(
                        iteration + 1,
                        row["env_steps"],
                        row["wall_s"],
                        max(state.best_return, score),
                        restarts,
                    ),
                )
                if committed.state.iteration % config.checkpoint_every == 0:
                    save(run_dir / CHECKPOINT, committed)
                progress.finished(row["return_pre"], score)
                if not row["accepted"]:
                    progress.write(f"iteration {iteration}: line search found no step; theta kept")
            if committed.state.iteration % config.checkpoint_every != 0:  # else just written
                save(run_dir / CHECKPOINT, committed)
    except BaseException as error:  # a stop or a failure: keep the last completed iteration
        with stop_on_signals(already_stopping=True):  # more Ctrl-Cs cannot cut this short
            save(run_dir / CHECKPOINT, committed)
            progress.close()
            resume = f" Continue with:\n  metarl train --resume {run_dir}"
            print(
                f"\n{_stop_reason(error)}; checkpoint written at iteration "
                f"{committed.state.iteration} (iterations before it are done)."
                + ("" if isinstance(error, NonFiniteError) else resume),  # would fail again
                flush=True,
            )
            training.close()
            logger.close()
        error.reported = True  # the command adds nothing
        raise
    finally:
        progress.close()
        training.close()
        logger.close()
    return run_dir


def _stop_reason(error: BaseException) -> str:
    if isinstance(error, StopRequested):
        return error.reason
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return f"stopped by an error ({type(error).__name__})"
