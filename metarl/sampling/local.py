"""The local sampler: the whole meta-batch in this process, rollouts stepped together."""

from __future__ import annotations

import numpy as np
from torch import nn

from metarl.policies import Params
from metarl.sampling.meta_batch import (
    MetaBatch,
    SamplerSettings,
    SamplingProgress,
    sample_meta_batch,
)
from metarl.sampling.rollouts import make_vector_env


class LocalSampler:
    """Samples meta-batches in-process with `num_envs` env copies (rounded down to whole tasks).

    All rollouts of up to num_envs // rollouts_per_task tasks step together, one
    batched policy forward per time step; larger meta-batches go in waves; the copies'
    physics over `physics_threads` threads (HalfCheetah, Ant). The result depends on
    neither `num_envs` nor `physics_threads`.
    """

    def __init__(
        self,
        settings: SamplerSettings,
        policy: nn.Module,
        num_envs: int = 400,
        physics_threads: int = 1,
    ):
        per_task = settings.rollouts_per_task
        num_envs = max(per_task, (num_envs // per_task) * per_task)
        self.settings, self.policy = settings, policy
        self.vector_env = make_vector_env(
            settings.env_id, num_envs, settings.horizon, settings.env_kwargs, physics_threads
        )

    def sample(
        self,
        params: Params,
        tasks: list[dict],
        iteration: int,
        progress: SamplingProgress | None = None,
    ) -> MetaBatch:
        ids = np.arange(len(tasks))
        return sample_meta_batch(
            self.vector_env, self.policy, params, tasks, ids, iteration, self.settings, progress
        )

    def close(self) -> None:
        self.vector_env.close()
