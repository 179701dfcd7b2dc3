"""The Ray sampler in one process: the local sampler's rollouts, faults in actors survived.

The tests share one local Ray of 2 CPUs; its processes are checked to be gone at the end.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import ray
from helpers import assert_meta_batches_equal, read_metrics, without_timings
from helpers import small_navigation_config as small_config
from processes import process_tree, stop_processes
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from metarl.experiment import build_policy, iteration_tasks, sampler_settings
from metarl.policies import policy_params
from metarl.sampling import SamplingError
from metarl.sampling.local import LocalSampler
from metarl.sampling.meta_batch import SamplerSettings
from metarl.sampling.ray_sampler import RayOptions, RaySampler
from metarl.trainer import train

ROOT = Path(__file__).parents[1]
CHEETAH = "metarl/HalfCheetahVel-v0"
RAY = str(Path(sys.executable).parent / "ray")


# ---- in-process, on one local Ray -------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    temp_dir = tempfile.mkdtemp(prefix="metarl-ray-test-")  # short: Ray's socket paths
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=temp_dir,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    try:
        yield
    finally:
        pids = process_tree(roots={os.getpid()}) - {os.getpid()}  # Ray's daemons and workers
        ray.shutdown()
        left = stop_processes(pids, grace_s=10)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"Ray processes still running after ray.shutdown(): {left}"


def cheetah_setup(**changes):
    values = dict(env=CHEETAH, meta_batch_size=5, rollouts_per_task=4, horizon=30)
    config = small_config(**{**values, **changes})
    policy = build_policy(config)
    return config, policy, policy_params(policy)


def test_ray_sampler_gives_the_local_sampler_rollouts(local_ray):
    config, policy, params = cheetah_setup(inner_steps=2)
    options = RayOptions(num_workers=2, envs_per_worker=8)
    sampler = RaySampler(sampler_settings(config), policy, options)
    try:
        assert [list(c) for c in sampler.chunks(5)] == [[0, 1], [2, 3], [4]]
        progress = []  # (env steps, rollouts) after each chunk; 5 tasks x 4 x 3 phases in all
        for iteration in (0, 1):
            tasks = iteration_tasks(config, iteration)
            local = LocalSampler(sampler_settings(config), policy, 20)
            expected = local.sample(params, tasks, iteration)
            local.close()
            progress.clear()
            batch = sampler.sample(params, tasks, iteration, lambda *done: progress.append(done))
            assert_meta_batches_equal(expected, batch)
            assert len(progress) == 3 and progress[-1] == (expected.env_steps, 60)
            assert sorted(progress) == progress and {p[1] for p in progress} <= {12, 24, 36, 48, 60}
        stats = sampler.last_stats
        assert stats.chunks == 3 and stats.put_s >= 0 and stats.result_bytes > 0
    finally:
        sampler.close()
    assert ray.is_initialized()  # the sampler leaves a Ray it did not start running


def test_training_with_ray_equals_training_with_the_local_sampler(local_ray, tmp_path):
    config = small_config(iterations=2)  # Navigation2D, 4 tasks: chunks [0, 1], [2, 3]
    local = read_metrics(train(config, tmp_path / "local", show_progress=False))
    ray_config = dataclasses.replace(config, sampler="ray", num_workers=2)
    run_dir = train(ray_config, tmp_path / "ray", show_progress=False)
    rows = read_metrics(run_dir)
    assert without_timings(rows) == without_timings(local)
    assert [r["actor_restarts"] for r in rows] == ["0", "0"]
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert "faults/actor_restarts" in events.Tags()["scalars"]


@contextmanager
def fault_in_a_busy_actor(sampler: RaySampler, sig: signal.Signals) -> Iterator[list[int]]:
    """Send `sig` to the first actor seen sampling a chunk while the body runs."""
    hit: list[int] = []
    done = threading.Event()

    def inject():
        while not done.is_set() and not hit:
            busy = [a.pid for a in list(sampler.actors) if a.chunk is not None and a.pid]
            if busy:
                os.kill(busy[0], sig)
                hit.append(busy[0])
            time.sleep(0.001)

    thread = threading.Thread(target=inject, daemon=True)
    thread.start()
    try:
        yield hit
    finally:
        done.set()
        thread.join()


def test_killed_and_hung_actors_are_replaced_and_their_tasks_resampled(local_ray, caplog):
    config, policy, params = cheetah_setup(meta_batch_size=4, rollouts_per_task=5, horizon=200)
    tasks = iteration_tasks(config, 0)
    local = LocalSampler(sampler_settings(config), policy, 20)
    expected = local.sample(params, tasks, 0)
    local.close()
    options = RayOptions(num_workers=2, envs_per_worker=5, timeout_s=8.0)  # chunks of 1 task
    sampler = RaySampler(sampler_settings(config), policy, options)
    caplog.set_level(logging.WARNING, logger="metarl.sampling.ray_sampler")
    try:
        assert_meta_batches_equal(expected, sampler.sample(params, tasks, 0))  # actors up
        for restarts, sig in enumerate([signal.SIGKILL, signal.SIGSTOP], start=1):
            with fault_in_a_busy_actor(sampler, sig) as hit:
                batch = sampler.sample(params, tasks, 0)
            assert hit, "no actor was caught sampling"
            assert_meta_batches_equal(expected, batch)
            assert sampler.actor_restarts == restarts
            assert hit[0] not in [a.pid for a in sampler.actors]
    finally:
        sampler.close()
    logged = [r.getMessage() for r in caplog.records if "replacing it" in r.getMessage()]
    assert len(logged) == 2, logged
    assert "failed (ActorDiedError" in logged[0] and "re-sampling tasks" in logged[0]
    assert "timed out after 8 s" in logged[1] and "re-sampling tasks" in logged[1]


def test_a_chunk_that_keeps_failing_stops_with_a_clear_error(local_ray):
    config, policy, params = cheetah_setup(meta_batch_size=1, rollouts_per_task=5, horizon=200)
    tasks = iteration_tasks(config, 7)
    options = RayOptions(num_workers=2, timeout_s=0.01, max_consecutive_failures=2)
    sampler = RaySampler(sampler_settings(config), policy, options)
    try:
        with pytest.raises(SamplingError, match=r"tasks 0\.\.0 of iteration 7 failed 2 times"):
            sampler.sample(params, tasks, 7)
        assert sampler.actor_restarts == 2
    finally:
        sampler.close()


def test_a_worker_that_cannot_start_is_an_error_not_a_retry(local_ray):
    config, policy, params = cheetah_setup()
    settings = dataclasses.replace(sampler_settings(config), env_kwargs={"no_such_option": 1})
    assert isinstance(settings, SamplerSettings)
    sampler = RaySampler(settings, policy, RayOptions(num_workers=1))
    try:
        message = "could not start: TypeError: .*unexpected keyword argument 'no_such_option'"
        with pytest.raises(SamplingError, match=message):
            sampler.sample(params, iteration_tasks(config, 0), 0)
        assert sampler.actor_restarts == 0
    finally:
        sampler.close()
