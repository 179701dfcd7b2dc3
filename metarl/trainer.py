"""The training loop: sample a meta-batch, take a MAML-TRPO step, log; repeat.

A run directory holds the resolved `config.yaml`, `metrics.csv` (one row per
meta-iteration) and TensorBoard event files under `tensorboard/`.
"""

from __future__ import annotations

import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from metarl.baselines import estimate_advantages
from metarl.config import TrainConfig, config_to_yaml
from metarl.episodes import Episodes, step_batch
from metarl.maml_trpo import MetaBatchSteps, MetaStepSettings, meta_step
from metarl.metrics import MetricsLogger
from metarl.policies import GaussianMLPPolicy, policy_params
from metarl.runtime import keep_freed_memory, set_torch_threads
from metarl.sampling import MetaBatch, Sampler, SamplerSettings
from metarl.sampling.local import LocalSampler
from metarl.sampling.rollouts import TRAINING_STREAM

TASK_STREAM = 100  # seeds of the tasks of each iteration
HVP_SUBSAMPLE_STREAM = 101  # seeds of the tasks used for Hessian-vector products


def stream_rng(seed: int, stream: int, iteration: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, iteration)))


def horizon_of(config: TrainConfig) -> int:
    return config.horizon or gym.spec(config.env).max_episode_steps


def build_policy(config: TrainConfig, env_kwargs: dict | None = None) -> GaussianMLPPolicy:
    """The policy for the config's env, initialized from the run seed."""
    env = gym.make(config.env, **(env_kwargs or {}))
    torch.manual_seed(config.seed)
    policy = GaussianMLPPolicy(
        env.observation_space.shape[0],
        env.action_space.shape[0],
        config.hidden_sizes,
        config.activation,
        config.init_log_std,
    )
    env.close()
    return policy


def sampler_settings(config: TrainConfig, stream: int = TRAINING_STREAM) -> SamplerSettings:
    return SamplerSettings(
        env_id=config.env,
        horizon=horizon_of(config),
        rollouts_per_task=config.rollouts_per_task,
        inner_steps=config.inner_steps,
        inner_step_sizes=(config.inner_lr,) * config.inner_steps,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        normalize_advantages=config.normalize_advantages,
        seed=config.seed,
        stream=stream,
    )


def meta_step_settings(config: TrainConfig) -> MetaStepSettings:
    return MetaStepSettings(
        inner_step_sizes=(config.inner_lr,) * config.inner_steps,
        first_order=config.first_order,
        max_kl=config.max_kl,
        cg_iters=config.cg_iters,
        cg_damping=config.cg_damping,
        hvp=config.hvp,
        hvp_epsilon=config.hvp_epsilon,
        hvp_subsample=config.hvp_subsample,
        line_search_ratio=config.line_search_ratio,
        line_search_steps=config.line_search_steps,
    )


def make_sampler(config: TrainConfig, policy: GaussianMLPPolicy) -> Sampler:
    return LocalSampler(sampler_settings(config), policy, config.num_envs)


def iteration_tasks(task_env: gym.Env, config: TrainConfig, iteration: int) -> list[dict]:
    """The meta-batch of tasks of `iteration`: drawn from a seed of (run seed, iteration)."""
    seed = int(stream_rng(config.seed, TASK_STREAM, iteration).integers(2**31))
    task_env.reset(seed=seed)
    return task_env.unwrapped.sample_tasks(config.meta_batch_size)


def loss_steps(meta_batch: MetaBatch, config: TrainConfig) -> MetaBatchSteps:
    """Advantages (baseline fitted per task) and packed valid steps for the meta-step."""

    def steps(episodes: Episodes):
        advantages = estimate_advantages(
            episodes, config.gamma, config.gae_lambda, config.normalize_advantages
        )
        return step_batch(episodes, advantages, pack=True)

    return MetaBatchSteps([steps(e) for e in meta_batch.train], steps(meta_batch.valid))


def return_columns(meta_batch: MetaBatch) -> dict[str, float]:
    """return_pre (theta) and return_post_k (after k inner steps) of a meta-batch."""
    returns = [e.mean_return() for e in meta_batch.train] + [meta_batch.valid.mean_return()]
    columns = {"return_pre": returns[0]}
    columns.update({f"return_post_{k}": r for k, r in enumerate(returns[1:], start=1)})
    return columns


def train(config: TrainConfig, run_dir: Path, show_progress: bool = True) -> Path:
    """Meta-train from scratch into `run_dir`; returns the run directory."""
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(f"run directory {str(run_dir)!r} exists and is not empty")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config_to_yaml(config))

    keep_freed_memory()
    set_torch_threads(config.torch_threads)
    policy = build_policy(config)
    task_env = gym.make(config.env)
    sampler = make_sampler(config, policy)
    logger = MetricsLogger(run_dir)
    settings = meta_step_settings(config)
    env_steps, start = 0, time.perf_counter()
    progress = tqdm(
        range(config.iterations), desc="meta-iterations", disable=not show_progress, unit="it"
    )
    try:
        for iteration in progress:
            clock = time.perf_counter()
            tasks = iteration_tasks(task_env, config, iteration)
            meta_batch = sampler.sample(policy_params(policy), tasks, iteration)
            sampling_s = time.perf_counter() - clock

            clock = time.perf_counter()
            rng = stream_rng(config.seed, HVP_SUBSAMPLE_STREAM, iteration)
            new_params, stats = meta_step(
                policy, policy_params(policy), loss_steps(meta_batch, config), settings, rng
            )
            with torch.no_grad():
                for name, parameter in policy.named_parameters():
                    parameter.copy_(new_params[name])
            update_s = time.perf_counter() - clock

            env_steps += meta_batch.env_steps
            returns = return_columns(meta_batch)
            row = {
                "iteration": iteration,
                "env_steps": env_steps,
                "wall_s": time.perf_counter() - start,
                **returns,
                "kl": stats.kl,
                "surrogate_before": stats.surrogate_before,
                "surrogate_after": stats.surrogate_after,
                "line_search_steps": stats.line_search_steps,
                "accepted": int(stats.accepted),
                "cg_residual": stats.cg_residual,
                "sampling_s": sampling_s,
                "update_s": update_s,
                **{f"{phase}_s": s for phase, s in stats.seconds.items()},
                "env_steps_per_s": meta_batch.env_steps / sampling_s,
            }
            logger.log(row)
            last_post = returns[f"return_post_{config.inner_steps}"]
            progress.set_postfix(pre=f"{returns['return_pre']:.2f}", post=f"{last_post:.2f}")
            if not stats.accepted:
                progress.write(f"iteration {iteration}: line search found no step; theta kept")
    finally:
        sampler.close()
        logger.close()
        task_env.close()
    return run_dir
