"""Samplers: one protocol, a local and a Ray implementation, the same rollouts for the same seed."""

from __future__ import annotations

from typing import Protocol

from metarl.episodes import MetaBatch
from metarl.policies import Params
from metarl.sampling.meta_batch import SamplerSettings, SamplingProgress


class SamplingError(RuntimeError):
    """Sampling cannot go on: a Ray cluster is unreachable or its workers keep failing."""


class Sampler(Protocol):
    """Produces the rollouts of one meta-iteration.

    `sample(params, tasks, iteration)` returns, for task i of `tasks` (task id i),
    the rollouts of theta = `params` and of each inner step's adapted parameters
    (`MetaBatch.train`) and the validation rollouts (`MetaBatch.valid`), as
    `metarl.episodes.Rollouts` with their advantages computed. Seeds derive from the
    settings' run seed, `iteration`, the task id and the rollout index only.
    `progress(env_steps, rollouts)`, if given, is called with what has been sampled
    so far as sampling goes on; it changes nothing sampled.
    """

    def sample(
        self,
        params: Params,
        tasks: list[dict],
        iteration: int,
        progress: SamplingProgress | None = None,
    ) -> MetaBatch: ...

    def close(self) -> None: ...


__all__ = ["MetaBatch", "Sampler", "SamplerSettings", "SamplingError", "SamplingProgress"]
