"""Evaluation of adaptation on held-out tasks: MAML against the paper's baselines.

The measure is the paper's (Figures 4 and 5): the average return on new tasks
after 0, 1, .., K policy-gradient steps, each step on fresh rollouts of the
current adapted policy (the sampler's inner loop, without a graph). Methods:

- maml: the checkpoint's meta-parameters, inner step k with `eval_step_sizes[k]` (0.1
  then 0.05 by default, the last repeating; `metarl eval --eval-step-sizes` sets them).
- pretrained: a policy trained with TRPO on tasks of the whole distribution
  (`algorithm: pretrain`), fine-tuned with a step size tuned on training tasks.
- random: a freshly initialized policy, fine-tuned with a tuned step size.
- oracle: a policy trained with the task parameters in its observation
  (`algorithm: oracle`), evaluated without adaptation (a flat line).
- context: a policy with free inputs z meta-trained with MAML-TRPO adapting only z
  (`algorithm: context`), adapted with the evaluation step sizes.

Held-out tasks are drawn from a seed stream disjoint from training's; the step-size
tuning uses tasks from a third stream. Rollout seeds come from the evaluation stream.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import scipy.stats
import torch
from torch import nn

from metarl.config import TrainConfig
from metarl.config_validation import ConfigError
from metarl.experiment import (
    EVALUATION_STREAM,
    TUNING_TASK_STREAM,
    build_policy,
    held_out_tasks,
    sampler_settings,
)
from metarl.params import NonFiniteError
from metarl.policies import policy_params
from metarl.runtime import keep_freed_memory, set_torch_threads
from metarl.sampling.meta_batch import sample_meta_batch
from metarl.sampling.rollouts import make_vector_env

TUNING_ROLLOUT_SEED_OFFSET = 1_000_003  # tuning rollouts never share seeds with evaluation's
METHODS = ("maml", "pretrained", "random", "oracle", "context")


@dataclass
class AdaptationCurve:
    """Returns of one method after 0..K adaptation steps, per held-out task."""

    method: str
    step_sizes: list[float]  # the step size of each inner step (empty: not adapted)
    per_task: list[list[float]]  # [tasks][K + 1] mean return of each task's rollouts
    source: str  # where the policy came from
    # [tasks][K + 1] fraction of each task's episodes that succeeded (Meta-World), else None
    per_task_success: list[list[float]] | None = None
    # "episode_length" and each reward term -> [K + 1] means over all evaluated episodes:
    # what a return is made of (a shorter episode, a better forward term, ...)
    episode_means: dict[str, list[float]] = field(default_factory=dict)
    tasks: list = field(default_factory=list)  # the held-out tasks, in per_task's order
    # each reward term -> [tasks][K + 1] mean per-episode sum of each task's rollouts (they
    # add up to per_task): where two methods differ, task by task
    per_task_terms: dict[str, list[list[float]]] = field(default_factory=dict)
    # pretrained and random: each fine-tuning step size of the grid -> its mean return over
    # steps 1..K on the tuning tasks (the largest was chosen); empty for the others
    tuning_scores: dict[float, float] = field(default_factory=dict)

    @property
    def adapted(self) -> bool:
        return bool(self.step_sizes)

    def summary(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, half-width of the 95% confidence interval) over tasks, per step."""
        return mean_and_ci95(self.per_task)


def mean_and_ci95(per_task) -> tuple[np.ndarray, np.ndarray]:
    """Mean over tasks (axis 0) and the half-width of its 95% t-interval, per step."""
    returns = np.asarray(per_task, dtype=float)
    count = returns.shape[0]
    mean = returns.mean(0)
    if count < 2:
        return mean, np.full_like(mean, np.nan)
    sem = returns.std(0, ddof=1) / np.sqrt(count)
    return mean, scipy.stats.t.ppf(0.975, count - 1) * sem


def step_sizes_for(sizes: list[float], steps: int) -> list[float]:
    """Step k's size: sizes[k], the last one repeating."""
    return [sizes[min(k, len(sizes) - 1)] for k in range(steps)]


def adaptation_returns(
    policy: nn.Module,
    config: TrainConfig,
    tasks: list[dict],
    step_sizes: list[float],
    rollouts: int,
    seed: int,
    num_envs: int | None = None,
) -> np.ndarray:
    """[tasks, len(step_sizes) + 1] mean returns after 0..K inner steps of `policy`."""
    args = (policy, config, tasks, step_sizes, rollouts, seed, num_envs)
    return adaptation_outcomes(*args)[0]


def episode_means(phases) -> dict[str, list[float]]:
    """Mean episode length and each reward term's mean per-episode sum, per phase."""
    means = {"episode_length": [phase.mean_episode_length() for phase in phases]}
    for name in phases[0].reward_terms:
        means[name] = [phase.mean_reward_terms()[name] for phase in phases]
    return means


def per_task_terms(phases) -> dict[str, np.ndarray]:
    """Each reward term's mean per-episode sum of each task's rollouts, [tasks, phases]."""
    return {
        name: np.stack([phase.reward_terms[name].mean(-1).numpy() for phase in phases], axis=1)
        for name in phases[0].reward_terms
    }


def adaptation_outcomes(
    policy: nn.Module,
    config: TrainConfig,
    tasks: list[dict],
    step_sizes: list[float],
    rollouts: int,
    seed: int,
    num_envs: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None, dict[str, list[float]], dict[str, np.ndarray]]:
    """Mean returns and success rates (None: the env has none), [tasks, K + 1] each, the
    episodes' means per step (`episode_means`) and each reward term per task and step."""
    settings = sampler_settings(config, EVALUATION_STREAM, tuple(step_sizes), rollouts, seed)
    envs = num_envs or max(rollouts, (config.num_envs // rollouts) * rollouts)
    vector_env = make_vector_env(
        config.env, envs, settings.horizon, settings.env_kwargs, config.physics_threads
    )
    try:
        batch = sample_meta_batch(
            vector_env, policy, policy_params(policy), tasks, np.arange(len(tasks)), 0, settings
        )
    finally:
        vector_env.close()
    returns = np.stack([r.episode_returns().mean(-1).numpy() for r in batch.phases], axis=1)
    means, terms = episode_means(batch.phases), per_task_terms(batch.phases)
    if batch.valid.successes is None:
        return returns, None, means, terms
    success = np.stack([r.successes.mean(-1).numpy() for r in batch.phases], axis=1)
    return returns, success, means, terms


def tune_step_size(
    policy: nn.Module, config: TrainConfig, steps: int, tasks: int, rollouts: int, seed: int
) -> tuple[float, dict[float, float]]:
    """The fine-tuning step size with the best mean return over steps 1..K on training tasks.

    A step size whose fine-tuning diverges (non-finite actions) scores -inf.
    """
    tuning_tasks = held_out_tasks(config.env, tasks, seed, TUNING_TASK_STREAM)
    scores = {}
    for size in config.finetune_step_sizes:
        try:
            returns = adaptation_returns(
                policy,
                config,
                tuning_tasks,
                [size] * steps,
                rollouts,
                seed + TUNING_ROLLOUT_SEED_OFFSET,
            )
        except NonFiniteError:
            scores[size] = -np.inf
            continue
        scores[size] = float(returns[:, 1:].mean())
    return max(scores, key=scores.get), scores


def grid_edge_note(size: float, grid: list[float]) -> str:
    """A warning where the tuned step size is the grid's smallest or largest: the best
    size may lie beyond it, and the baseline is then weaker than it could be."""
    if len(set(grid)) < 2 or min(grid) < size < max(grid):
        return ""
    side, beyond = ("smallest", "smaller") if size == min(grid) else ("largest", "larger")
    return (
        f"; the {side} size of finetune_step_sizes: a {beyond} one may do better, "
        "extend the grid to find out"
    )


def evaluate_method(
    method: str,
    policy: nn.Module,
    config: TrainConfig,
    tasks: list[dict],
    steps: int,
    rollouts: int,
    seed: int,
    source: str,
    log=print,
) -> AdaptationCurve:
    """The adaptation curve of one method's policy on the held-out `tasks`."""
    if method in ("maml", "context"):
        sizes, scores = step_sizes_for(config.eval_step_sizes, steps), {}
    elif method in ("pretrained", "random"):
        size, scores = tune_step_size(policy, config, steps, min(len(tasks), 20), rollouts, seed)
        log(
            f"{method}: fine-tuning step size {size} (mean return over steps 1..{steps}: "
            + ", ".join(f"{k}: {v:.2f}" for k, v in scores.items())
            + ")"
            + grid_edge_note(size, config.finetune_step_sizes)
        )
        sizes = [size] * steps
    elif method == "oracle":
        sizes, scores = [], {}
    else:
        raise ValueError(f"unknown method {method!r}; methods: {list(METHODS)}")
    outcomes = adaptation_outcomes(policy, config, tasks, sizes, rollouts, seed)
    returns, success, means, terms = outcomes
    if not sizes:  # not adapted: the same policy at every step
        returns = np.repeat(returns, steps + 1, axis=1)
        success = None if success is None else np.repeat(success, steps + 1, axis=1)
        means = {name: values * (steps + 1) for name, values in means.items()}
        terms = {name: np.repeat(values, steps + 1, axis=1) for name, values in terms.items()}
    per_task_success = None if success is None else success.tolist()
    return AdaptationCurve(
        method,
        sizes,
        returns.tolist(),
        source,
        per_task_success,
        means,
        tasks=list(tasks),
        per_task_terms={name: values.tolist() for name, values in terms.items()},
        tuning_scores=scores,
    )


def random_policy(config: TrainConfig) -> nn.Module:
    """A freshly initialized policy of the MAML architecture (seeded by the run seed + 1)."""
    return build_policy(dataclasses.replace(config, algorithm="maml", seed=config.seed + 1))


@dataclass
class EvaluationSettings:
    tasks: int = 40
    steps: int = 3
    rollouts: int | None = None  # None: the config's rollouts_per_task
    seed: int = 0
    physics_threads: int | None = None  # None: each method's config's (the same results)
    finetune_step_sizes: list[float] | None = None  # None: each method's config's grid
    eval_step_sizes: list[float] | None = None  # MAML's and context's steps (None: config's)


def run_evaluation(
    methods: dict[str, tuple[nn.Module, TrainConfig, str]],
    settings: EvaluationSettings,
    env_id: str,
    log=print,
) -> list[AdaptationCurve]:
    """Adaptation curves of each method (name -> (policy, its config, source)) on shared tasks."""
    keep_freed_memory()
    set_torch_threads(0)
    tasks = held_out_tasks(env_id, settings.tasks, settings.seed)
    curves = []
    for method, (policy, config, source) in methods.items():
        config = with_overrides(config, settings)
        rollouts = settings.rollouts or config.rollouts_per_task
        log(f"evaluating {method} on {len(tasks)} held-out tasks ...")
        with torch.no_grad():
            curve = evaluate_method(
                method, policy, config, tasks, settings.steps, rollouts, settings.seed, source, log
            )
        curves.append(curve)
    return curves


def with_overrides(config: TrainConfig, settings: EvaluationSettings) -> TrainConfig:
    """`config` with the evaluation's own settings: local sampling over `physics_threads`
    (evaluation samples locally, whatever trained), the `finetune_step_sizes` grid and the
    `eval_step_sizes`, each validated as the config's own (ConfigError naming the option)."""
    if settings.physics_threads is not None:
        threads = settings.physics_threads
        changes = {"sampler": "local", "ray_address": None, "physics_threads": threads}
        config = _replaced(config, f"--physics-threads {threads}", changes)
    for key in ("finetune_step_sizes", "eval_step_sizes"):
        sizes = getattr(settings, key)
        if sizes is not None:
            config = _replaced(config, "--" + key.replace("_", "-"), {key: list(sizes)})
    return config


def _replaced(config: TrainConfig, option: str, changes: dict) -> TrainConfig:
    try:
        return dataclasses.replace(config, **changes)
    except ConfigError as error:
        raise ConfigError(f"{option}: {error}") from None
