"""Sampling one meta-batch: rollouts of theta, adaptation without a graph, rollouts of theta'.

For each inner step k the rollouts of the current parameters are sampled with
their advantages (the value baseline fitted per task) and the parameters take
one gradient step on them (no graph: the learner recomputes the adaptation with
its graph from these same rollouts and advantages); then the validation
rollouts of the adapted parameters are sampled. The local sampler runs this on
the whole meta-batch, each Ray actor on its chunk of tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from metarl.episodes import MetaBatch, Rollouts
from metarl.inner import adapt
from metarl.params import NonFiniteError
from metarl.policies import Params
from metarl.runtime import torch_threads
from metarl.sampling.rollouts import AdvantageSettings, RolloutKey, rollout, task_params

# progress(env_steps, rollouts): what one `sample` call has sampled so far, called as it
# grows (per wave of envs, or per chunk of tasks); for displays only, it sees no data.
SamplingProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class SamplerSettings:
    """What a sampler needs to know to produce a meta-batch (picklable, sent to workers)."""

    env_id: str
    horizon: int
    rollouts_per_task: int
    inner_steps: int
    inner_step_sizes: tuple[float, ...]
    gamma: float
    gae_lambda: float
    normalize_advantages: bool
    seed: int
    stream: int = 0
    adapted_names: tuple[str, ...] | None = None
    env_kwargs: dict = field(default_factory=dict)

    @property
    def advantage(self) -> AdvantageSettings:
        return AdvantageSettings(self.gamma, self.gae_lambda, self.normalize_advantages)


def adapt_one_task(
    policy: nn.Module,
    params: Params,
    stacked: bool,
    rollouts: Rollouts,
    position: int,
    step: int,
    settings: SamplerSettings,
) -> Params:
    """Task `position` after inner step `step` (no graph), as a stack of one [1, ...].

    Each task is adapted alone, so its result does not depend on the other tasks
    sampled with it (see metarl.sampling.rollouts).
    """
    one_task = rollouts.select([position])
    params = task_params(policy, params, position) if stacked else params
    leaves = {n: p.detach().requires_grad_() for n, p in params.items()}
    adapted = adapt(
        policy,
        leaves,
        [one_task],
        [settings.inner_step_sizes[step]],
        first_order=True,
        adapted_names=settings.adapted_names,
        stacked=stacked,
    )
    return task_params(policy, {n: p.detach() for n, p in adapted.items()}, 0)


def sample_meta_batch(
    vector_env,
    policy: nn.Module,
    params: Params,
    tasks: list[dict],
    task_ids: np.ndarray,
    iteration: int,
    settings: SamplerSettings,
    progress: SamplingProgress | None = None,
) -> MetaBatch:
    """Rollouts of every inner step and the validation rollouts for `tasks`."""
    s = settings
    done = [0, 0]  # env steps, rollouts

    def on_wave(env_steps: int, rollouts: int) -> None:
        done[0] += env_steps
        done[1] += rollouts
        progress(*done)

    report = on_wave if progress is not None else None
    phases: list[Rollouts] = []  # theta's rollouts, each inner step's, the validation ones
    current, stacked = {n: p.detach() for n, p in params.items()}, False
    for phase in range(s.inner_steps + 1):
        key = RolloutKey(s.seed, s.stream, iteration, phase=phase)
        try:
            rollouts = rollout(
                vector_env,
                policy,
                current,
                tasks,
                task_ids,
                s.rollouts_per_task,
                s.horizon,
                key,
                s.advantage,
                report,
            )
        except NonFiniteError as error:
            if phase == 0:
                raise
            raise NonFiniteError(
                f"iteration {iteration}: after inner step {phase} of size "
                f"{s.inner_step_sizes[phase - 1]:g}, {error}: the step size is too large "
                "(training: inner_lr; evaluation: eval_step_sizes)"
            ) from None
        phases.append(rollouts)
        if phase == s.inner_steps:
            break
        with torch_threads(1):
            adapted = [
                adapt_one_task(policy, current, stacked, rollouts, position, phase, s)
                for position in range(len(tasks))
            ]
        current = {name: torch.cat([a[name] for a in adapted]) for name in adapted[0]}
        stacked = True
    train, valid = phases[:-1], phases[-1]
    return MetaBatch(train, valid)
