"""Few-shot tasks as batches of tensors, and the sinusoid regression task distribution.

A `TaskBatch` holds T tasks at once: a support set (the K examples the inner loop
adapts on) and a query set (where the adapted model is scored), stacked along a
leading task dimension so that the inner loop can process all tasks in one call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

AMPLITUDE_RANGE = (0.1, 5.0)
PHASE_RANGE = (0.0, math.pi)
INPUT_RANGE = (-5.0, 5.0)


@dataclass
class TaskBatch:
    """T few-shot tasks: inputs [T, n, ...], targets [T, n] (class ids) or [T, n, 1].

    task_params: what identifies each task ([T, 2] amplitude and phase for sinusoids),
    for the oracle comparison; None where the tasks have no such parameters.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    task_params: torch.Tensor | None = None

    @property
    def num_tasks(self) -> int:
        return self.support_x.shape[0]

    def select(self, start: int, stop: int) -> TaskBatch:
        """Tasks start..stop-1 of the batch."""

        def part(t):
            return None if t is None else t[start:stop]

        return TaskBatch(
            part(self.support_x),
            part(self.support_y),
            part(self.query_x),
            part(self.query_y),
            part(self.task_params),
        )

    def on(self, device: torch.device | str) -> TaskBatch:
        """The same tasks on `device` (on the device they are on: the same tensors, no copy)."""

        def move(t):
            return None if t is None else t.to(device)

        return TaskBatch(
            move(self.support_x),
            move(self.support_y),
            move(self.query_x),
            move(self.query_y),
            move(self.task_params),
        )

    def to(self, dtype: torch.dtype) -> TaskBatch:
        """The same tasks with floating-point inputs (and regression targets) cast to dtype."""

        def cast(t):
            return t.to(dtype) if t is not None and t.is_floating_point() else t

        return TaskBatch(
            cast(self.support_x),
            cast(self.support_y),
            cast(self.query_x),
            cast(self.query_y),
            cast(self.task_params),
        )


def sinusoid_values(x: np.ndarray, amplitude: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """y = A sin(x - phi), broadcasting task parameters [T, 1] over inputs [T, n]."""
    return amplitude * np.sin(x - phase)


def sample_sinusoid_params(rng: np.random.Generator, num_tasks: int) -> np.ndarray:
    """[T, 2] amplitudes A ~ U[0.1, 5] and phases phi ~ U[0, pi] of T sinusoids."""
    amplitude = rng.uniform(*AMPLITUDE_RANGE, size=num_tasks)
    phase = rng.uniform(*PHASE_RANGE, size=num_tasks)
    return np.stack([amplitude, phase], axis=1)


def sinusoid_points(
    rng: np.random.Generator, params: np.ndarray, num_points: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """x ~ U[-5, 5] and y = A sin(x - phi) of each sinusoid in params [T, 2]: [T, n, 1] each."""
    x = rng.uniform(*INPUT_RANGE, size=(len(params), num_points))
    y = sinusoid_values(x, params[:, :1], params[:, 1:])

    def column(a):  # [T, n] -> float32 [T, n, 1]
        return torch.as_tensor(a, dtype=torch.float32).unsqueeze(-1)

    return column(x), column(y)


def sample_sinusoid_tasks(
    rng: np.random.Generator, num_tasks: int, shots: int, query: int
) -> TaskBatch:
    """T random sinusoids, each with K support and `query` points drawn independently."""
    params = sample_sinusoid_params(rng, num_tasks)
    x, y = sinusoid_points(rng, params, shots + query)
    return TaskBatch(
        x[:, :shots],
        y[:, :shots],
        x[:, shots:],
        y[:, shots:],
        torch.as_tensor(params, dtype=torch.float32),
    )


def with_task_params(x: torch.Tensor, task_params: torch.Tensor) -> torch.Tensor:
    """Inputs [T, n, d] with each task's parameters [T, p] appended: [T, n, d + p] (oracle)."""
    expanded = task_params.unsqueeze(1).expand(-1, x.shape[1], -1)
    return torch.cat([x, expanded], dim=-1)


def seeded_rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    """An independent generator for (run seed, purpose, index); streams never overlap."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index)))
