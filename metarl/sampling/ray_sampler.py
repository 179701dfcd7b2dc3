"""The Ray sampler: actors with vectors of envs sample chunks of the meta-batch in parallel.

Per meta-iteration the driver puts theta into the object store once, cuts the
meta-batch into chunks of consecutive tasks (one wave of an actor's envs each)
and hands a chunk to every idle actor, gathering results as they finish
(`ray.wait`). An actor runs `sample_meta_batch` on its chunk: rollouts of theta,
advantages, inner steps without a graph, validation rollouts; it returns them as
`Rollouts` (the connection to Ray itself is `ray_cluster`'s). Seeds derive from
(run seed, iteration, task id, rollout) only, and each task is computed alone on
one thread, so the result is bitwise the local sampler's however many actors
there are and however the tasks were cut.

Faults: an actor that dies (its process or its node) or runs past the timeout
is killed, replaced, and its chunk goes back into the queue with the same task
ids, hence the same seeds. A chunk that fails `max_consecutive_failures` times
in a row, an actor that cannot be created, no actor being available for a whole
timeout, or the loss of the local Ray started for the run raises `SamplingError`;
nothing is dropped silently.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import ray
from ray.exceptions import NodeDiedError, ObjectLostError, RayActorError, WorkerCrashedError
from torch import nn

from metarl.episodes import MetaBatch
from metarl.params import NonFiniteError
from metarl.policies import Params
from metarl.sampling import SamplingError
from metarl.sampling.meta_batch import SamplerSettings, SamplingProgress
from metarl.sampling.ray_cluster import connect
from metarl.sampling.ray_worker import RemoteWorker

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # at least this long for an actor to start (imports, envs, resources)
_FAULTS = (RayActorError, WorkerCrashedError, NodeDiedError, ObjectLostError)


@dataclass(frozen=True)
class RayOptions:
    """How the Ray sampler runs (see the README's Ray section)."""

    num_workers: int = 0  # 0: one actor per CPU of the cluster
    envs_per_worker: int = 200  # env copies per actor; a chunk is what they step at once
    address: str | None = None  # None: start a local Ray; "auto" or host:port: join a cluster
    timeout_s: float = 600.0  # a chunk running longer than this counts as a fault
    max_consecutive_failures: int = 3  # failures of one chunk in a row before giving up
    log_dir: Path | None = None  # a local Ray's logs go here (the run directory)
    dashboard: bool = False
    actor_threads: int = 1  # torch threads per actor


@dataclass
class _Actor:
    handle: object
    starting: object | None  # the pending ready() call, until the actor is up
    pid: int | None = None  # its process, once up
    chunk: int | None = None  # the chunk it is sampling
    call: object | None = None
    started: float = 0.0


@dataclass
class SampleStats:
    """Where the time of the last `sample` call went (driver clock)."""

    wall_s: float = 0.0
    put_s: float = 0.0  # ray.put of theta
    get_s: float = 0.0  # ray.get of the results (deserialization, transfer)
    result_bytes: int = 0
    busy_s: dict[int, float] = field(default_factory=dict)  # actor slot -> compute seconds
    chunks: int = 0


@dataclass
class _Round:
    """One `sample` call: the chunks, which are queued or done, and their failures."""

    theta: object  # ObjectRef of the meta-parameters
    tasks: list[dict]
    chunks: list[np.ndarray]
    iteration: int
    last_progress: float
    progress: SamplingProgress | None = None  # told (env steps, rollouts) per finished chunk
    queue: deque = field(init=False)
    results: dict[int, MetaBatch] = field(default_factory=dict)
    failures: list[int] = field(init=False)
    stats: SampleStats = field(default_factory=SampleStats)

    def __post_init__(self):
        self.queue = deque(range(len(self.chunks)))
        self.failures = [0] * len(self.chunks)


class RaySampler:
    """Samples meta-batches with a pool of Ray actors (protocol: metarl.sampling.Sampler)."""

    def __init__(self, settings: SamplerSettings, policy: nn.Module, options: RayOptions):
        self.settings, self.policy, self.options = settings, policy, options
        self.tasks_per_wave = max(1, options.envs_per_worker // settings.rollouts_per_task)
        self.start_timeout_s = max(options.timeout_s, START_TIMEOUT_S)
        self.actor_restarts = 0
        self.last_stats = SampleStats()
        self.actors: list[_Actor] = []
        self.connection = connect(options.address, options.log_dir, options.dashboard)
        try:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            self.num_workers = options.num_workers or cpus
            if self.num_workers > cpus:
                logger.warning("%d Ray workers for %d CPUs: some wait", self.num_workers, cpus)
            self.actors = [self._start_actor() for _ in range(self.num_workers)]
        except BaseException:
            self.close()
            raise

    def _start_actor(self) -> _Actor:
        num_envs = self.tasks_per_wave * self.settings.rollouts_per_task
        handle = RemoteWorker.options(scheduling_strategy="SPREAD").remote(
            self.settings, self.policy, num_envs, self.options.actor_threads
        )
        return _Actor(handle, handle.ready.remote())

    def chunks(self, num_tasks: int) -> list[np.ndarray]:
        """Task ids cut into chunks: one wave of an actor's envs, at least one chunk per actor."""
        size = min(self.tasks_per_wave, math.ceil(num_tasks / self.num_workers))
        return [np.arange(i, min(i + size, num_tasks)) for i in range(0, num_tasks, size)]

    def sample(
        self,
        params: Params,
        tasks: list[dict],
        iteration: int,
        progress: SamplingProgress | None = None,
    ) -> MetaBatch:
        begin = time.perf_counter()
        self._check_local_ray(iteration)
        theta = ray.put({name: p.detach().cpu().numpy() for name, p in params.items()})
        run = _Round(theta, tasks, self.chunks(len(tasks)), iteration, time.monotonic(), progress)
        run.stats.put_s = time.perf_counter() - begin
        while len(run.results) < len(run.chunks):
            self._dispatch(run)
            self._collect(run)
            self._expire(run)
        batch = MetaBatch.concatenate([run.results[i] for i in range(len(run.chunks))])
        run.stats.result_bytes = sum(
            t.numel() * t.element_size()
            for r in batch.phases
            for t in (r.observations, r.actions, r.rewards, r.mask, r.advantages)
        )
        run.stats.wall_s, run.stats.chunks = time.perf_counter() - begin, len(run.chunks)
        self.last_stats = run.stats
        return batch

    def _dispatch(self, run: _Round) -> None:
        """Give a queued chunk to every actor that is up and idle."""
        for actor in self.actors:
            if actor.starting is None and actor.chunk is None and run.queue:
                actor.chunk, actor.started = run.queue.popleft(), time.monotonic()
                ids = run.chunks[actor.chunk]
                tasks = [run.tasks[i] for i in ids]
                actor.call = actor.handle.sample.remote(run.theta, tasks, ids, run.iteration)

    def _collect(self, run: _Round) -> None:
        """Wait for the next result or actor start-up, at most until the nearest deadline."""
        calls = {a.call: a for a in self.actors if a.chunk is not None}
        starts = {a.starting: a for a in self.actors if a.starting is not None}
        deadlines = [a.started + self.options.timeout_s for a in calls.values()]
        deadline = min(deadlines, default=run.last_progress + self.start_timeout_s)
        timeout = max(0.0, deadline - time.monotonic())
        for ref in ray.wait([*calls, *starts], num_returns=1, timeout=timeout)[0]:
            self._check_local_ray(run.iteration)  # before ray.get reads the object store
            actor, clock = calls.get(ref) or starts[ref], time.perf_counter()
            try:
                value = ray.get(ref)
            except _FAULTS as error:
                if getattr(error, "actor_init_failed", False):
                    cause = str(error).strip().splitlines()[-1]  # the creation task's exception
                    raise SamplingError(f"a Ray worker could not start: {cause}") from error
                self._replace(actor, run, _reason(error))
                continue
            except ray.exceptions.RayTaskError as error:
                if isinstance(error.cause, NonFiniteError):  # the config's: as sampled locally
                    raise error.cause from None
                raise
            run.last_progress = time.monotonic()
            if ref in starts:
                actor.starting, actor.pid = None, value
                continue
            run.stats.get_s += time.perf_counter() - clock
            run.results[actor.chunk], seconds = value
            slot = self.actors.index(actor)
            run.stats.busy_s[slot] = run.stats.busy_s.get(slot, 0.0) + seconds
            actor.chunk = actor.call = None
            if run.progress is not None:  # env steps and rollouts of the chunks done so far
                done = [r for batch in run.results.values() for r in batch.phases]
                rollouts = sum(r.mask[..., 0].numel() for r in done)
                run.progress(sum(r.num_steps for r in done), rollouts)

    def _expire(self, run: _Round) -> None:
        """Replace actors past the timeout; give up when no actor could work for too long."""
        now = time.monotonic()
        for actor in list(self.actors):
            if actor.chunk is not None and now - actor.started > self.options.timeout_s:
                self._replace(actor, run, f"timed out after {self.options.timeout_s:g} s")
        idle = all(a.chunk is None for a in self.actors)
        if idle and run.queue and now - run.last_progress > self.start_timeout_s:
            raise SamplingError(
                f"no Ray worker became available within {self.start_timeout_s:g} s "
                f"({len(self.actors)} actors of 1 CPU each requested; free cluster "
                f"resources: {ray.available_resources()})"
            )

    def _replace(self, actor: _Actor, run: _Round, reason: str) -> None:
        """Kill `actor`, start another in its place and queue its chunk again (same seeds)."""
        self.actor_restarts += 1
        slot, index = self.actors.index(actor), actor.chunk
        lost = ""
        if index is not None:
            ids = run.chunks[index]
            run.failures[index] += 1
            run.queue.appendleft(index)
            lost = f"; re-sampling tasks {ids[0]}..{ids[-1]} of iteration {run.iteration}"
        logger.warning(
            "Ray worker %d %s: replacing it (restart %d)%s", slot, reason, self.actor_restarts, lost
        )
        _kill(actor)
        self._check_local_ray(run.iteration)
        if index is not None and run.failures[index] >= self.options.max_consecutive_failures:
            raise SamplingError(
                f"tasks {ids[0]}..{ids[-1]} of iteration {run.iteration} failed "
                f"{run.failures[index]} times in a row (last: {reason}); stopped before this "
                "iteration's update: the policy and checkpoint are the previous iteration's"
            )
        self.actors[slot] = self._start_actor()

    def _check_local_ray(self, iteration: int) -> None:
        """Stop cleanly when the local Ray started for the run has died.

        Ray ends this process from C++ at its next use of the object store (ray.put,
        ray.get of a large result) once the raylet is gone; checking first lets the
        trainer write its checkpoint and say what happened.
        """
        if not self.connection.local_ray_alive():
            raise SamplingError(
                "the local Ray started for this run lost its raylet (killed, or out of "
                f"memory); stopped during iteration {iteration}: the policy and checkpoint "
                "are the previous iteration's"
            )

    def close(self) -> None:
        """Kill the actors; shut Ray down (or disconnect) if this sampler connected it."""
        if ray.is_initialized():
            for actor in self.actors:
                _kill(actor)
        self.actors = []
        self.connection.close()


def _kill(actor: _Actor) -> None:
    try:
        ray.kill(actor.handle, no_restart=True)
    except Exception:  # noqa: BLE001 - already gone with its node, or Ray shutting down
        logger.debug("could not kill a Ray worker", exc_info=True)


def _reason(error: Exception) -> str:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"failed ({type(error).__name__}: {first_line})"
