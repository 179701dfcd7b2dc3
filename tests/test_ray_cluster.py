"""Ray clusters joined by address: a real two-node cluster survives a lost worker actor or
node; an address that nobody or nothing answers, and bad Ray settings, are refused naming them.

The cluster test starts two `ray start` nodes of its own (loopback, 1 CPU each). Every
process a test starts is stopped by that test or its fixture, and checked to be gone.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import read_metrics, without_timings
from processes import command_line, process_table, process_tree, stop_processes

from metarl.config import TrainConfig
from metarl.config_validation import ConfigError, load_config
from metarl.sampling import SamplingError, ray_cluster
from metarl.sampling.ray_cluster import check_reachable
from metarl.trainer import train

ROOT = Path(__file__).parents[1]
CHEETAH = "metarl/HalfCheetahVel-v0"
RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- a two-node cluster started with `ray start` on this machine --------------------


@dataclasses.dataclass
class LoopbackCluster:
    address: str
    env: dict[str, str]
    groups: list[int]  # the process group of each node's `ray start`: head, worker
    temp_dirs: list[str]

    def processes(self) -> set[int]:
        return process_tree(groups=set(self.groups))


def ray_start(args: list[str], env: dict[str, str]) -> int:
    """Run `ray start` in a session of its own; its daemons keep its process group."""
    node = subprocess.Popen(
        [RAY, "start", *args, "--disable-usage-stats"],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, _ = node.communicate(timeout=120)
    assert node.returncode == 0, output[-3000:]
    return node.pid


@pytest.fixture
def loopback_cluster() -> Iterator[LoopbackCluster]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    temp_dirs = [tempfile.mkdtemp(prefix="metarl-head-"), tempfile.mkdtemp(prefix="metarl-node-")]
    port = free_port()
    cluster = LoopbackCluster(f"127.0.0.1:{port}", env, [], temp_dirs)
    try:
        head = ["--head", f"--port={port}", "--include-dashboard=false"]
        head += [f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}"]
        for index, role in enumerate([head, [f"--address={cluster.address}"]]):
            cluster.groups.append(
                ray_start(
                    [
                        *role,
                        "--num-cpus=1",
                        "--node-ip-address=127.0.0.1",
                        f"--temp-dir={temp_dirs[index]}",
                        f"--dashboard-agent-listen-port={free_port()}",
                    ],
                    env,
                )
            )
        yield cluster
    finally:
        left = stop_processes(cluster.processes())
        for path in temp_dirs:
            shutil.rmtree(path, ignore_errors=True)
        assert not left, f"cluster processes still running: {left}"


def train_command(run_dir: Path, address: str, *overrides: str) -> list[str]:
    """`metarl train` of a small HalfCheetahVel run on the Ray cluster at `address`."""
    config = ROOT / "configs" / "halfcheetah_vel.yaml"
    command = [sys.executable, "-m", "metarl.cli", "train", str(config)]
    for override in ("sampler=ray", "hidden_sizes=[16, 16]", "torch_threads=1", *overrides):
        command += ["--set", override]
    return [*command, "--ray-address", address, "--run-dir", str(run_dir), "--no-progress"]


@pytest.mark.parametrize("lost", ["actor", pytest.param("node", marks=pytest.mark.slow)])
def test_training_on_a_two_node_cluster_survives_a_lost_worker(loopback_cluster, tmp_path, lost):
    """`metarl train --ray-address` joins a real 2-node cluster. An actor killed mid-iteration
    (or the whole worker node: its raylet, agents and actors) is replaced, its tasks
    re-sampled with the same seeds: every iteration completes with the full meta-batch and
    the same numbers as the local sampler."""
    cluster, run_dir = loopback_cluster, tmp_path / "run"
    tasks, rollouts, horizon, iterations = 4, 5, 200, 8
    overrides = [
        f"iterations={iterations}",
        f"meta_batch_size={tasks}",
        f"rollouts_per_task={rollouts}",
        f"horizon={horizon}",
        "num_workers=2",
        f"envs_per_worker={rollouts}",  # chunks of one task: 4 per iteration
    ]
    run = subprocess.Popen(
        train_command(run_dir, cluster.address, *overrides),
        env=cluster.env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = None
    try:
        deadline = time.monotonic() + 120
        while killed is None and run.poll() is None and time.monotonic() < deadline:
            if (run_dir / "metrics.csv").exists() and len(read_metrics(run_dir)) >= 1:
                table = process_table()
                worker_node = process_tree(groups={cluster.groups[1]})  # raylet, agents, actors
                busy = [p for p in worker_node if "RolloutWorker.sample" in command_line(table, p)]
                if busy:
                    killed = busy if lost == "actor" else worker_node
                    for pid in killed:
                        os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)
        out, err = run.communicate(timeout=180)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert killed is not None, "no actor was caught sampling on the worker node"
    assert run.returncode == 0, err[-3000:]
    assert "replacing it" in err and "re-sampling tasks" in err, err[-3000:]
    rows = read_metrics(run_dir)
    assert [int(r["iteration"]) for r in rows] == list(range(iterations))
    full = tasks * rollouts * horizon * 2  # HalfCheetah never terminates: no step is missing
    steps = [int(r["env_steps"]) for r in rows]
    assert [b - a for a, b in zip([0, *steps], steps)] == [full] * iterations
    assert int(rows[-1]["actor_restarts"]) >= 1

    config = load_config(TrainConfig, run_dir / "config.yaml")
    assert config.ray_address == cluster.address
    local_config = dataclasses.replace(config, sampler="local", ray_address=None)
    local = read_metrics(train(local_config, tmp_path / "local", show_progress=False))

    def comparable(metrics):
        return [{k: v for k, v in r.items() if k != "actor_restarts"} for r in metrics]

    assert comparable(without_timings(rows)) == comparable(without_timings(local))


def test_an_unreachable_ray_address_fails_quickly_naming_it(tmp_path):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    result = subprocess.run(
        train_command(tmp_path / "run", address, "iterations=1"),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"ray_address {address!r}: cannot reach a Ray cluster" in result.stderr
    assert time.monotonic() - start < 60


def test_an_address_that_never_answers_fails_within_the_connect_timeout(monkeypatch):
    monkeypatch.setattr(ray_cluster, "CONNECT_TIMEOUT_S", 2.0)
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(SamplingError, match=f"ray_address '{address}': cannot reach"):
            check_reachable(address)
        assert 2.0 <= time.monotonic() - start < 4.0


@pytest.mark.parametrize(
    "override, message",
    [
        ("ray_address=nowhere", "'ray_address' must be 'auto' or host:port"),
        ("ray_address=host:port", "'ray_address' must be 'auto' or host:port"),
        ("sampler=dask", "'sampler': 'dask' is not one of ['local', 'ray']"),
        ("num_workers=-1", "'num_workers' must be in [0, 10,000]"),
        ("worker_timeout_s=0", "'worker_timeout_s' must be in (0, 1,000,000.0]"),
        ("max_consecutive_failures=0", "'max_consecutive_failures' must be >= 1"),
    ],
)
def test_bad_ray_settings_name_the_key(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(TrainConfig, ROOT / "configs/navigation.yaml", [override])
    assert message in str(error.value)
