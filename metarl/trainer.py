"""The training loop: sample a meta-batch, take a MAML-TRPO step, log; repeat.

A run directory holds the resolved `config.yaml`, `metrics.csv` (one row per
meta-iteration), TensorBoard event files under `tensorboard/`, `checkpoint.pt`
(every `checkpoint_every` iterations, at the end, and on Ctrl-C or an error) and
`best.pt` (the meta-parameters with the best post-adaptation return so far).

Everything random in an iteration derives from (run seed, iteration): its tasks,
its rollouts' seeds and its Hessian-vector-product subsample. A checkpoint
therefore needs only the meta-parameters and the iteration to continue exactly;
it stores the global RNG states too, for code that uses them.

The four algorithms share this loop: `maml` and `context` adapt (all parameters,
or only the context vector z), `pretrain` and `oracle` take plain TRPO steps on
the rollouts of theta (no inner step), `oracle` on the env's oracle=True variant.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

import metarl
from metarl.baselines import estimate_advantages
from metarl.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from metarl.config import TrainConfig, config_from_dict, config_to_yaml, load_config
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


def sampler_settings(config: TrainConfig, stream: int = TRAINING_STREAM) -> SamplerSettings:
    setup = algorithm_setup(config)
    return SamplerSettings(
        env_id=config.env,
        horizon=horizon_of(config),
        rollouts_per_task=config.rollouts_per_task,
        inner_steps=setup.inner_steps,
        inner_step_sizes=(config.inner_lr,) * setup.inner_steps,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        normalize_advantages=config.normalize_advantages,
        seed=config.seed,
        stream=stream,
        adapted_names=setup.adapted_names,
        env_kwargs=setup.env_kwargs,
    )


def meta_step_settings(config: TrainConfig) -> MetaStepSettings:
    setup = algorithm_setup(config)
    return MetaStepSettings(
        inner_step_sizes=(config.inner_lr,) * setup.inner_steps,
        adapted_names=setup.adapted_names,
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


@dataclass
class TrainingState:
    """Where a run is: the next iteration to run and what has been counted so far."""

    iteration: int = 0
    env_steps: int = 0
    wall_s: float = 0.0
    best_return: float = float("-inf")


CHECKPOINT, BEST = "checkpoint.pt", "best.pt"


def checkpoint_payload(
    config: TrainConfig, params: dict[str, torch.Tensor], state: TrainingState
) -> dict:
    return {
        "kind": "rl",
        "config": dataclasses.asdict(config),
        "policy": {name: p.detach() for name, p in params.items()},  # serialized at once
        "state": dataclasses.asdict(state),
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),  # noqa: NPY002 (the global state, saved as is)
            "python": random.getstate(),
        },
    }


def policy_from_checkpoint(checkpoint: dict) -> tuple[TrainConfig, GaussianMLPPolicy]:
    """The config and the policy (with its saved meta-parameters) of an RL checkpoint."""
    if checkpoint.get("kind") != "rl":
        raise CheckpointError(f"not an RL training checkpoint (kind {checkpoint.get('kind')!r})")
    config = config_from_dict(checkpoint["config"], "checkpoint config")
    policy = build_policy(config)
    policy.load_state_dict(checkpoint["policy"])
    return config, policy


def train(config: TrainConfig, run_dir: Path, show_progress: bool = True) -> Path:
    """Meta-train from scratch into `run_dir`; returns the run directory."""
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(f"run directory {str(run_dir)!r} exists and is not empty")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config_to_yaml(config))
    policy = build_policy(config)
    return run_training(config, run_dir, policy, TrainingState(), show_progress)


def resume(run_dir: Path, show_progress: bool = True, iterations: int | None = None) -> Path:
    """Continue the run in `run_dir` from its checkpoint, exactly as if never stopped.

    `iterations` may raise the run's total number of iterations; nothing else changes.
    """
    run_dir = Path(run_dir)
    config = load_config(run_dir / "config.yaml")
    checkpoint = load_checkpoint(run_dir / CHECKPOINT)
    saved_version = checkpoint.get("metarl_version", "unknown")
    if saved_version.split(".")[:2] != metarl.__version__.split(".")[:2]:
        raise CheckpointError(
            f"{run_dir / CHECKPOINT} was written by metarl {saved_version}; this is metarl "
            f"{metarl.__version__}, whose runs may differ: retrain, or resume with {saved_version}"
        )
    saved_config, policy = policy_from_checkpoint(checkpoint)
    if saved_config != config:
        saved = dataclasses.asdict(saved_config)
        changed = sorted(k for k, v in dataclasses.asdict(config).items() if saved[k] != v)
        raise CheckpointError(
            f"{run_dir / 'config.yaml'} differs from the checkpoint's config in {changed}; "
            "a resumed run must keep its config"
        )
    if iterations is not None:
        if iterations < 1:
            raise CheckpointError(f"--set iterations={iterations}: must be >= 1")
        config = dataclasses.replace(config, iterations=iterations)
        (run_dir / "config.yaml").write_text(config_to_yaml(config))
    state = TrainingState(**checkpoint["state"])
    torch.set_rng_state(checkpoint["rng"]["torch"])
    np.random.set_state(checkpoint["rng"]["numpy"])  # noqa: NPY002
    random.setstate(checkpoint["rng"]["python"])
    if state.iteration >= config.iterations:
        print(f"{run_dir}: all {config.iterations} iterations done; nothing to resume")
        return run_dir
    return run_training(config, run_dir, policy, state, show_progress)


def run_training(
    config: TrainConfig,
    run_dir: Path,
    policy: GaussianMLPPolicy,
    state: TrainingState,
    show_progress: bool,
) -> Path:
    """Iterations state.iteration .. config.iterations - 1, checkpointing as it goes."""
    keep_freed_memory()
    set_torch_threads(config.torch_threads)
    task_env = gym.make(config.env)
    sampler = make_sampler(config, policy, run_dir)
    logger = MetricsLogger(run_dir, resume_from=state.iteration)
    settings = meta_step_settings(config)
    last_return = f"return_post_{algorithm_setup(config).inner_steps}"
    committed = {name: p.detach().clone() for name, p in policy.named_parameters()}
    start = time.perf_counter() - state.wall_s
    progress = tqdm(
        range(state.iteration, config.iterations),
        initial=state.iteration,
        total=config.iterations,
        desc="meta-iterations",
        disable=not show_progress,
        unit="it",
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
            update_s = time.perf_counter() - clock

            returns = return_columns(meta_batch)
            score = returns.get(last_return, returns["return_pre"])
            row = {
                "iteration": iteration,
                "env_steps": state.env_steps + meta_batch.env_steps,
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
                "actor_restarts": getattr(sampler, "actor_restarts", 0),  # Ray faults so far
            }
            logger.log(row)
            if score > state.best_return:  # theta of this iteration scored best so far
                best = TrainingState(iteration, row["env_steps"], row["wall_s"], score)
                save_checkpoint(run_dir / BEST, checkpoint_payload(config, committed, best))

            # Commit the iteration: parameters and counters move together.
            with torch.no_grad():
                for name, parameter in policy.named_parameters():
                    parameter.copy_(new_params[name])
            committed = new_params  # meta_step's own copies, not the module's parameters
            state = TrainingState(
                iteration + 1, row["env_steps"], row["wall_s"], max(state.best_return, score)
            )
            if state.iteration % config.checkpoint_every == 0:
                save_checkpoint(run_dir / CHECKPOINT, checkpoint_payload(config, committed, state))

            progress.set_postfix(pre=f"{returns['return_pre']:.2f}", post=f"{score:.2f}")
            if not stats.accepted:
                progress.write(f"iteration {iteration}: line search found no step; theta kept")
    except BaseException as error:  # Ctrl-C or a failure: keep the last completed iteration
        save_checkpoint(run_dir / CHECKPOINT, checkpoint_payload(config, committed, state))
        reason = "interrupted" if isinstance(error, KeyboardInterrupt) else "stopped by an error"
        print(
            f"\n{reason} at iteration {state.iteration}; checkpoint written. Continue with:\n"
            f"  metarl train --resume {run_dir}",
            flush=True,
        )
        raise
    else:
        if state.iteration % config.checkpoint_every != 0:  # else just written in the loop
            save_checkpoint(run_dir / CHECKPOINT, checkpoint_payload(config, committed, state))
    finally:
        sampler.close()
        logger.close()
        task_env.close()
    return run_dir
