"""The training loop: sample a meta-batch, take a MAML-TRPO step, log; repeat.

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

import torch

from metarl.checkpoints import save_checkpoint
from metarl.config import TrainConfig
from metarl.config_validation import config_to_yaml
from metarl.episodes import MetaBatch
from metarl.experiment import (
    HVP_SUBSAMPLE_STREAM,
    algorithm_setup,
    build_policy,
    check_memory,
    iteration_tasks,
    make_sampler,
    meta_step_settings,
    stream_rng,
)
from metarl.maml_trpo import MetaStepStats, meta_step
from metarl.metrics import MetricsLogger
from metarl.params import NonFiniteError
from metarl.policies import GaussianMLPPolicy, Params, policy_params
from metarl.progress import TrainingProgress, sampler_ready, start_block
from metarl.resuming import BEST, CHECKPOINT, TrainingState, checkpoint_payload, resume_point
from metarl.run_dir import RunDirLock, existing_run_dir, new_run_dir, write_text_file
from metarl.runtime import keep_freed_memory, learner_device, set_torch_threads, stop_on_signals


def phase_names(inner_steps: int) -> list[str]:
    """Column suffixes of a meta-batch's phases: pre (theta), post_1 .. post_K (adapted)."""
    return ["pre"] + [f"post_{k}" for k in range(1, inner_steps + 1)]


def meta_batch_columns(meta_batch: MetaBatch) -> dict[str, float]:
    """Per phase: the return, success rate, reward terms, episode length and baseline fit."""
    columns: dict[str, float] = {}
    for name, rollouts in zip(phase_names(len(meta_batch.train)), meta_batch.phases):
        columns[f"return_{name}"] = rollouts.mean_return()
        if rollouts.successes is not None:  # Meta-World: the fraction of episodes that succeeded
            columns[f"success_{name}"] = rollouts.mean_success()
        for term, value in rollouts.mean_reward_terms().items():
            columns[f"{term}_{name}"] = value
        columns[f"episode_length_{name}"] = rollouts.mean_episode_length()
        columns[f"explained_variance_{name}"] = rollouts.mean_explained_variance()
    return columns


def step_columns(stats: MetaStepStats) -> dict[str, float]:
    return {
        "kl": stats.kl,
        "surrogate_before": stats.surrogate_before,
        "surrogate_after": stats.surrogate_after,
        "line_search_steps": stats.line_search_steps,
        "accepted": int(stats.accepted),
        "cg_residual": stats.cg_residual,
        "inner_step_norm": stats.inner_step_norm,
    }


class Training:
    """A config's policy and sampler, run one meta-iteration at a time (`run_iteration`)."""

    def __init__(
        self,
        config: TrainConfig,
        policy: GaussianMLPPolicy | None = None,
        run_dir: Path | None = None,
    ):
        keep_freed_memory()
        set_torch_threads(config.torch_threads)
        self.config = config
        self.device = learner_device(config.device)
        self.policy = build_policy(config) if policy is None else policy
        self.settings = meta_step_settings(config)
        self.last_phase = phase_names(algorithm_setup(config).inner_steps)[-1]
        self.sampler = make_sampler(config, self.policy, run_dir)

    def run_iteration(
        self, iteration: int, env_steps: int = 0, progress: TrainingProgress | None = None
    ) -> tuple[Params, dict]:
        """Sample and update once; (new meta-parameters, metrics row). The policy is unchanged.

        `env_steps`: steps taken before this iteration (the row counts the total).
        `progress`: shown the sampling as it goes, and the start of the meta-step.
        """
        clock = time.perf_counter()
        tasks = iteration_tasks(self.config, iteration)
        sampled = progress.sampled if progress is not None else None
        meta_batch = self.sampler.sample(policy_params(self.policy), tasks, iteration, sampled)
        sampling_s = time.perf_counter() - clock
        if progress is not None:
            progress.updating()

        clock = time.perf_counter()
        rng = stream_rng(self.config.seed, HVP_SUBSAMPLE_STREAM, iteration)
        params = policy_params(self.policy)  # the sampler's copy, on CPU
        learner_params = {name: p.detach().to(self.device) for name, p in params.items()}
        learner_batch = meta_batch.to(self.device)  # the same tensors on CPU
        new_params, stats = meta_step(
            self.policy, learner_params, learner_batch, self.settings, rng
        )
        new_params = {name: p.cpu() for name, p in new_params.items()}
        update_s = time.perf_counter() - clock

        row = {
            "iteration": iteration,
            "env_steps": env_steps + meta_batch.env_steps,
            **meta_batch_columns(meta_batch),
            "log_std": float(params["log_std"].detach().mean()),
            **step_columns(stats),
            "sampling_s": sampling_s,
            "update_s": update_s,
            **{f"{phase}_s": s for phase, s in stats.seconds.items()},
            "env_steps_per_s": meta_batch.env_steps / sampling_s,
        }
        return new_params, row

    def score(self, row: dict) -> float:
        """The return the best checkpoint is chosen by: after the last inner step."""
        return row[f"return_{self.last_phase}"]

    def commit(self, params: Params) -> None:
        with torch.no_grad():
            for name, parameter in self.policy.named_parameters():
                parameter.copy_(params[name])

    def close(self) -> None:
        self.sampler.close()


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
        raise
    finally:
        progress.close()
        training.close()
        logger.close()
    return run_dir


def _stop_reason(error: BaseException) -> str:
    signal_number = getattr(error, "signal_number", None)
    if signal_number is not None:
        return {2: "interrupted (Ctrl-C)", 15: "stopped by SIGTERM"}.get(signal_number, "stopped")
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return f"stopped by an error ({type(error).__name__})"
