"""The Ray sampler: actors with vectors of envs sample chunks of the meta-batch in parallel.

Per meta-iteration the driver puts theta into the object store once, cuts the
meta-batch into chunks of consecutive tasks (one wave of an actor's envs each)
and hands a chunk to every idle actor, gathering results as they finish
(`ray.wait`). An actor runs `sample_meta_batch` on its chunk: rollouts of theta,
baseline fit, inner steps without a graph, validation rollouts; it returns numpy
arrays. Seeds derive from (run seed, iteration, task id, rollout) only, and each
task is computed alone on one thread, so the result is bitwise the local
sampler's however many actors there are and however the tasks were cut.

Faults: an actor that dies (its process or its node) or runs past the timeout
is killed, replaced, and its chunk goes back into the queue with the same task
ids, hence the same seeds. A chunk that fails `max_consecutive_failures` times
in a row, an actor that cannot be created, or no actor being available for a
whole timeout raises `SamplingError`; nothing is dropped silently.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import socket
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import ray
import torch
from ray.exceptions import NodeDiedError, ObjectLostError, RayActorError, WorkerCrashedError
from torch import nn

from metarl.episodes import MetaBatch
from metarl.policies import Params
from metarl.runtime import keep_freed_memory
from metarl.sampling import SamplingError
from metarl.sampling.meta_batch import SamplerSettings, sample_meta_batch
from metarl.sampling.rollouts import make_vector_env

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0  # a cluster address that does not answer within this fails
START_TIMEOUT_S = 120.0  # at least this long for an actor to start (imports, envs, resources)
_SOCKET_PATH_MAX = 107  # AF_UNIX; Ray puts sockets at <temp dir>/session_<~42>/sockets/<name>
_HTTP2_PREFACE, _HTTP2_SETTINGS = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0x4
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


_RemoteWorker = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(RolloutWorker)


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
    queue: deque = field(init=False)
    results: dict[int, MetaBatch] = field(default_factory=dict)
    failures: list[int] = field(init=False)
    stats: SampleStats = field(default_factory=SampleStats)

    def __post_init__(self):
        self.queue = deque(range(len(self.chunks)))
        self.failures = [0] * len(self.chunks)


def connect(options: RayOptions) -> tuple[bool, Path | None]:
    """Connect this process to Ray: (whether it called ray.init, a log link to resolve).

    An existing connection (a caller's own ray.init) is used as it is and left open.
    The log link is <run dir>/ray when it points to a short temp dir (see _temp_dir).
    """
    if ray.is_initialized():
        return False, None
    quiet = dict(log_to_driver=False, logging_level=logging.WARNING)
    if options.address is None:
        temp_dir, link = _temp_dir(options.log_dir)
        ray.init(address="local", include_dashboard=options.dashboard, _temp_dir=temp_dir, **quiet)
        return True, link
    check_reachable(options.address)
    try:
        ray.init(address=options.address, **quiet)
    except ConnectionError as error:  # not a Ray GCS, or it refused us (token authentication)
        raise SamplingError(
            f"ray_address {options.address!r}: {error}. Check the address; a cluster started "
            "by `ray start` uses token authentication: set RAY_AUTH_MODE=token here and give "
            "it the cluster's token (~/.ray/auth_token or RAY_AUTH_TOKEN)"
        ) from None
    return True, None


def _temp_dir(log_dir: Path | None) -> tuple[str | None, Path | None]:
    """A local Ray's temp dir: <run dir>/ray, or, when Ray's socket paths would be too long
    there, a short temp dir linked from <run dir>/ray until `_move_logs` at shutdown."""
    if log_dir is None:
        return None, None
    wanted = Path(log_dir).absolute() / "ray"
    if len(str(wanted)) + 64 <= _SOCKET_PATH_MAX:
        wanted.mkdir(parents=True, exist_ok=True)
        return str(wanted), None
    short = tempfile.mkdtemp(prefix="metarl-ray-")
    wanted.parent.mkdir(parents=True, exist_ok=True)
    if wanted.exists() or wanted.is_symlink():
        return short, None  # keep what is there; the logs stay in the temp dir
    wanted.symlink_to(short, target_is_directory=True)
    return short, wanted


def _move_logs(link: Path) -> None:
    """Replace the link <run dir>/ray by the short temp dir it points to (Ray has stopped)."""
    source = Path(os.readlink(link))
    try:
        for sockets in source.glob("session_*/sockets"):
            shutil.rmtree(sockets, ignore_errors=True)  # dead sockets cannot be copied
        link.unlink()
        shutil.move(str(source), str(link))
        latest = link / "session_latest"
        if latest.is_symlink():  # it pointed into the temp dir
            session = Path(os.readlink(latest)).name
            latest.unlink()
            latest.symlink_to(session, target_is_directory=True)
    except OSError as error:
        logger.warning("Ray's logs stay in %s: %s", source, error)


def check_reachable(address: str) -> None:
    """Fail within CONNECT_TIMEOUT_S, naming the address, unless a gRPC server answers there.

    ray.init retries an address where nothing answers for minutes. A Ray cluster's
    GCS (and a Ray client server) speaks gRPC: after the HTTP/2 preface it sends
    a SETTINGS frame at once.
    """
    target = address.removeprefix("ray://")
    if target == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        try:
            target = canonicalize_bootstrap_address("auto")
        except ConnectionError as error:
            raise SamplingError(f"ray_address 'auto': no running Ray cluster ({error})") from None
    host, _, port = target.rpartition(":")
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    try:
        with socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S) as conn:
            conn.sendall(_HTTP2_PREFACE)
            header = b""
            while len(header) < 9:  # length (3), type (1), flags (1), stream (4)
                conn.settimeout(max(deadline - time.monotonic(), 0.001))
                received = conn.recv(9 - len(header))
                if not received:
                    raise ConnectionError("connection closed without an answer")
                header += received
        if header[3] != _HTTP2_SETTINGS:
            raise ConnectionError("the server there does not speak gRPC")
    except (OSError, ValueError) as error:
        raise SamplingError(
            f"ray_address {address!r}: cannot reach a Ray cluster at {target} within "
            f"{CONNECT_TIMEOUT_S:g} s ({error or type(error).__name__}); "
            "start one with `ray start --head`"
        ) from None


class RaySampler:
    """Samples meta-batches with a pool of Ray actors (protocol: metarl.sampling.Sampler)."""

    def __init__(self, settings: SamplerSettings, policy: nn.Module, options: RayOptions):
        self.settings, self.policy, self.options = settings, policy, options
        self.tasks_per_wave = max(1, options.envs_per_worker // settings.rollouts_per_task)
        self.start_timeout_s = max(options.timeout_s, START_TIMEOUT_S)
        self.actor_restarts = 0
        self.last_stats = SampleStats()
        self.actors: list[_Actor] = []
        self.owns_ray, self.log_link = connect(options)
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
        handle = _RemoteWorker.options(scheduling_strategy="SPREAD").remote(
            self.settings, self.policy, num_envs, self.options.actor_threads
        )
        return _Actor(handle, handle.ready.remote())

    def chunks(self, num_tasks: int) -> list[np.ndarray]:
        """Task ids cut into chunks: one wave of an actor's envs, at least one chunk per actor."""
        size = min(self.tasks_per_wave, math.ceil(num_tasks / self.num_workers))
        return [np.arange(i, min(i + size, num_tasks)) for i in range(0, num_tasks, size)]

    def sample(self, params: Params, tasks: list[dict], iteration: int) -> MetaBatch:
        begin = time.perf_counter()
        theta = ray.put({name: p.detach().cpu().numpy() for name, p in params.items()})
        run = _Round(theta, tasks, self.chunks(len(tasks)), iteration, time.monotonic())
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
            actor, clock = calls.get(ref) or starts[ref], time.perf_counter()
            try:
                value = ray.get(ref)
            except _FAULTS as error:
                if getattr(error, "actor_init_failed", False):
                    cause = str(error).strip().splitlines()[-1]  # the creation task's exception
                    raise SamplingError(f"a Ray worker could not start: {cause}") from error
                self._replace(actor, run, _reason(error))
                continue
            run.last_progress = time.monotonic()
            if ref in starts:
                actor.starting, actor.pid = None, value
                continue
            run.stats.get_s += time.perf_counter() - clock
            run.results[actor.chunk], seconds = value
            slot = self.actors.index(actor)
            run.stats.busy_s[slot] = run.stats.busy_s.get(slot, 0.0) + seconds
            actor.chunk = actor.call = None

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
        if index is not None and run.failures[index] >= self.options.max_consecutive_failures:
            raise SamplingError(
                f"tasks {ids[0]}..{ids[-1]} of iteration {run.iteration} failed "
                f"{run.failures[index]} times in a row (last: {reason}); stopped before this "
                "iteration's update: the policy and checkpoint are the previous iteration's"
            )
        self.actors[slot] = self._start_actor()

    def close(self) -> None:
        """Kill the actors; shut Ray down (or disconnect) if this sampler connected it."""
        if ray.is_initialized():
            for actor in self.actors:
                _kill(actor)
            if self.owns_ray:  # stops a local Ray; only disconnects from a cluster
                ray.shutdown()
        self.actors, self.owns_ray = [], False
        if self.log_link is not None:
            _move_logs(self.log_link)
            self.log_link = None


def _kill(actor: _Actor) -> None:
    try:
        ray.kill(actor.handle, no_restart=True)
    except Exception:  # noqa: BLE001 - already gone with its node, or Ray shutting down
        logger.debug("could not kill a Ray worker", exc_info=True)


def _reason(error: Exception) -> str:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"failed ({type(error).__name__}: {first_line})"
