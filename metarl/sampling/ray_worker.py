"""A Ray sampler's actor: a vector of envs and a copy of the policy module.

The driver (`metarl.sampling.ray_sampler`) creates these with `RemoteWorker` and hands
each a chunk of the meta-batch; an actor runs `sample_meta_batch` on it exactly as the
local sampler would, on one torch thread by default (actors share the cores).
"""

from __future__ import annotations

import os
import time

import numpy as np
import ray
import torch
from torch import nn

from metarl.episodes import MetaBatch
from metarl.runtime import keep_freed_memory
from metarl.sampling.meta_batch import SamplerSettings, sample_meta_batch
from metarl.sampling.rollouts import make_vector_env


class RolloutWorker:
    """An actor: a vector of envs and a copy of the policy module; samples chunks of tasks."""

    def __init__(self, settings: SamplerSettings, policy: nn.Module, num_envs: int, threads: int):
        torch.set_num_threads(threads)  # actors share the cores: one thread each by default
        keep_freed_memory()  # as the trainer's process does
        self.settings, self.policy = settings, policy
        self.vector_env = make_vector_env(
            settings.env_id, num_envs, settings.horizon, settings.env_kwargs
        )

    def ready(self) -> int:
        return os.getpid()

    def sample(
        self, params: dict[str, np.ndarray], tasks: list[dict], task_ids: np.ndarray, iteration: int
    ) -> tuple[MetaBatch, float]:
        """The chunk's meta-batch and the seconds spent computing it."""
        start = time.perf_counter()
        theta = {name: torch.tensor(value) for name, value in params.items()}  # fresh, aligned
        batch = sample_meta_batch(
            self.vector_env, self.policy, theta, tasks, task_ids, iteration, self.settings
        )
        return batch, time.perf_counter() - start


RemoteWorker = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(RolloutWorker)
