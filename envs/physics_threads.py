"""Threads that step a vector env's MuJoCo copies side by side.

MuJoCo's Python bindings release the GIL inside `mj_step`, so copies split over
threads step at the same time; the Python around each call (setting `ctrl`, copying
`qpos`) still takes turns. Each copy's physics reads only its own MjData and the
shared, read-only MjModel, so the results are bitwise those of one thread
(tests/test_vector_env.py); only the wall time changes.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class PhysicsThreads:
    """`count` threads; `run(step_range, n)` calls step_range(start, stop) over range(n) in
    `count` contiguous parts, one per thread (in this thread when count is 1)."""

    def __init__(self, count: int):
        if int(count) != count or count < 1:
            raise ValueError(f"physics_threads must be an integer >= 1, got {count!r}")
        self.count = int(count)
        self._pool = ThreadPoolExecutor(self.count, "physics") if self.count > 1 else None

    def run(self, step_range: Callable[[int, int], None], n: int) -> None:
        if self._pool is None or n < 2:
            step_range(0, n)
            return
        bounds = np.linspace(0, n, min(self.count, n) + 1).astype(int).tolist()
        # list(): wait for every part, and raise the first part's error here
        list(self._pool.map(step_range, bounds[:-1], bounds[1:]))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
