"""One meta-iteration: sample a meta-batch, take a MAML-TRPO step, make the metrics row.

`Training` holds a config's policy and sampler; `run_iteration` is the paper's
Algorithm 3 for one meta-batch: sample the tasks' rollouts with theta and with each
inner step's adapted parameters (the sampler, on CPU), then the meta-step on the
learner's device (`metarl.maml_trpo`), and returns the new theta with the row of
metrics.csv. The training loop (`metarl.trainer`) and the benchmarks call it.

The four algorithms share it: `maml` and `context` adapt (all parameters, or only the
context vector z), `pretrain` and `oracle` take plain TRPO steps on the rollouts of
theta (no inner step), `oracle` on the env's oracle=True variant.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from metarl.config import TrainConfig
from metarl.episodes import MetaBatch
from metarl.experiment import (
    HVP_SUBSAMPLE_STREAM,
    algorithm_setup,
    build_policy,
    iteration_tasks,
    make_sampler,
    meta_step_settings,
    stream_rng,
)
from metarl.maml_trpo import MetaStepStats, meta_step
from metarl.policies import GaussianMLPPolicy, Params, policy_params
from metarl.progress import TrainingProgress
from metarl.runtime import keep_freed_memory, learner_device, set_torch_threads


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
