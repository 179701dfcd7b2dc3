"""Everything a run is built from, made from its config: policy, sampler, settings, task streams.

The trainer, the evaluation, the comparison methods and the benchmarks build
what they need here, so one config always means the same policy, the same
sampler settings and the same tasks. Every random draw of a run comes from a
seed stream of (run seed, stream, iteration): the streams are named here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from metarl.config import TrainConfig
from metarl.maml_trpo import MetaStepSettings
from metarl.policies import GaussianMLPPolicy
from metarl.runtime import check_fits_in_memory
from metarl.sampling import Sampler, SamplerSettings
from metarl.sampling.local import LocalSampler
from metarl.sampling.rollouts import EVALUATION_STREAM, TRAINING_STREAM

TASK_STREAM = 100  # the tasks of each training iteration
HVP_SUBSAMPLE_STREAM = 101  # the tasks used for Hessian-vector products
HELD_OUT_TASK_STREAM = 200  # evaluation's held-out tasks
TUNING_TASK_STREAM = 201  # the tasks on which fine-tuning step sizes are tuned

__all__ = ["EVALUATION_STREAM", "TRAINING_STREAM"]


def stream_rng(seed: int, stream: int, iteration: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, iteration)))


def horizon_of(config: TrainConfig) -> int:
    return config.horizon or gym.spec(config.env).max_episode_steps


@dataclass(frozen=True)
class AlgorithmSetup:
    """How an algorithm uses the shared machinery."""

    env_kwargs: dict  # e.g. {"oracle": True}
    inner_steps: int  # inner steps in training (0: plain TRPO on theta's rollouts)
    adapted_names: tuple[str, ...] | None  # parameters the inner loop adapts (None: all)
    context_size: int  # free context inputs z of the policy (0: none)


def algorithm_setup(config: TrainConfig) -> AlgorithmSetup:
    return {
        "maml": AlgorithmSetup({}, config.inner_steps, None, 0),
        "pretrain": AlgorithmSetup({}, 0, None, 0),
        "oracle": AlgorithmSetup({"oracle": True}, 0, None, 0),
        "context": AlgorithmSetup({}, config.inner_steps, ("context",), config.context_size),
    }[config.algorithm]


def build_policy(config: TrainConfig) -> GaussianMLPPolicy:
    """The policy for the config's env and algorithm, initialized from the run seed."""
    setup = algorithm_setup(config)
    env = gym.make(config.env, **setup.env_kwargs)
    torch.manual_seed(config.seed)
    policy = GaussianMLPPolicy(
        env.observation_space.shape[0],
        env.action_space.shape[0],
        config.hidden_sizes,
        config.activation,
        config.init_log_std,
        setup.context_size,
    )
    env.close()
    return policy


FLOAT_BYTES = 4


def memory_estimate(config: TrainConfig) -> int:
    """Bytes a meta-iteration needs at least: its rollout arrays and the policy.

    Every phase (theta's rollouts and each inner step's) keeps, per step of each
    rollout, the observation, action, noise, reward, mask and advantage, and the
    learner's forward pass through them keeps each hidden layer's activations;
    the policy's parameters are held a few times over (gradients, CG vectors).
    """
    setup = algorithm_setup(config)
    env = gym.make(config.env, **setup.env_kwargs)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    steps = config.meta_batch_size * config.rollouts_per_task * horizon_of(config)
    per_step = obs_dim + 2 * act_dim + 3 + sum(config.hidden_sizes)
    widths = [obs_dim + setup.context_size, *config.hidden_sizes, act_dim]
    params = sum((a + 1) * b for a, b in zip(widths, widths[1:]))
    return FLOAT_BYTES * ((setup.inner_steps + 1) * steps * per_step + 8 * params)


def check_memory(config: TrainConfig) -> None:
    """Refuse (ConfigError) a config whose arrays cannot fit in this machine's memory."""
    sizes = f"{config.meta_batch_size} x {config.rollouts_per_task} x {horizon_of(config)}"
    check_fits_in_memory(
        memory_estimate(config),
        f"the rollouts (meta_batch_size x rollouts_per_task x horizon = {sizes} steps a "
        "phase) and the policy of one meta-iteration",
        "meta_batch_size, rollouts_per_task, horizon, inner_steps or hidden_sizes",
    )


def sampler_settings(
    config: TrainConfig,
    stream: int = TRAINING_STREAM,
    step_sizes: tuple[float, ...] | None = None,
    rollouts: int | None = None,
    seed: int | None = None,
) -> SamplerSettings:
    """Training's sampler settings, or evaluation's: other inner step sizes, rollouts, seed."""
    setup = algorithm_setup(config)
    if step_sizes is None:
        step_sizes = (config.inner_lr,) * setup.inner_steps
    return SamplerSettings(
        env_id=config.env,
        horizon=horizon_of(config),
        rollouts_per_task=rollouts or config.rollouts_per_task,
        inner_steps=len(step_sizes),
        inner_step_sizes=tuple(step_sizes),
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        normalize_advantages=config.normalize_advantages,
        seed=config.seed if seed is None else seed,
        stream=stream,
        adapted_names=setup.adapted_names,
        env_kwargs=setup.env_kwargs,
    )


def meta_step_settings(config: TrainConfig) -> MetaStepSettings:
    setup = algorithm_setup(config)
    return MetaStepSettings(
        inner_step_sizes=(config.inner_lr,) * setup.inner_steps,
        adapted_names=setup.adapted_names,
        fixed_names=("log_std",) if config.meta_log_std == "fixed" else (),
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


def make_sampler(
    config: TrainConfig, policy: GaussianMLPPolicy, run_dir: Path | None = None
) -> Sampler:
    """The config's sampler; a local Ray started for `sampler: ray` logs into `run_dir`/ray."""
    if config.sampler == "ray":
        from metarl.sampling.ray_sampler import RayOptions, RaySampler  # imports ray

        options = RayOptions(
            num_workers=config.num_workers,
            envs_per_worker=config.envs_per_worker,
            address=config.ray_address,
            timeout_s=config.worker_timeout_s,
            max_consecutive_failures=config.max_consecutive_failures,
            log_dir=run_dir,
            dashboard=config.ray_dashboard,
        )
        return RaySampler(sampler_settings(config), policy, options)
    return LocalSampler(sampler_settings(config), policy, config.num_envs, config.physics_threads)


def sample_tasks(env_id: str, count: int, seed: int, split: str = "train") -> list[dict]:
    """`count` tasks of the env's training (or test) tasks, drawn by the env from `seed`."""
    env = gym.make(env_id)
    env.reset(seed=seed)
    tasks = env.unwrapped.sample_tasks(count, split)
    env.close()
    return tasks


def iteration_tasks(config: TrainConfig, iteration: int) -> list[dict]:
    """The meta-batch of tasks of training iteration `iteration`."""
    seed = int(stream_rng(config.seed, TASK_STREAM, iteration).integers(2**31))
    return sample_tasks(config.env, config.meta_batch_size, seed)


def held_out_tasks(env_id: str, count: int, seed: int, stream: int = HELD_OUT_TASK_STREAM):
    """Tasks no training iteration draws: evaluation's (or, with TUNING_TASK_STREAM, tuning's).

    Evaluation's come from the env's test tasks (Meta-World's test set; for ML10 its
    held-out environments), tuning's from its training tasks.
    """
    state = np.random.SeedSequence(seed, spawn_key=(stream,)).generate_state(1)[0]
    split = "test" if stream == HELD_OUT_TASK_STREAM else "train"
    return sample_tasks(env_id, count, int(state), split)
