"""Ray beyond one process: a real two-node cluster joined, lost workers and drivers survived.

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
from helpers import wait_for_rows
from processes import command_line, is_zombie, process_table, process_tree, stop_processes
from test_training import read_metrics, without_timings

from metarl.checkpoints import load_checkpoint
from metarl.config import TrainConfig
from metarl.config_validation import ConfigError, load_config
from metarl.sampling import SamplingError, ray_cluster, ray_reaper
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


def test_ctrl_c_stops_training_and_the_ray_it_started(tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group): checkpoint, exit 130, no Ray left."""
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "metarl.cli", "train", str(ROOT / "configs/navigation.yaml")]
    for override in ("sampler=ray", "iterations=500", "meta_batch_size=4", "horizon=20"):
        command += ["--set", override]
    run = subprocess.Popen(
        [*command, "--run-dir", str(run_dir), "--no-progress"],
        start_new_session=True,
        # A shell without job control starts background jobs (e.g. `bash .ci/run &`) with
        # SIGINT ignored, and children inherit that: restore the default so that Python
        # installs its KeyboardInterrupt handler, as in a terminal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_rows(run, run_dir, 2, timeout=90)
        ray_processes = process_tree(roots={run.pid}) - {run.pid}
        table = process_table()
        assert any("RolloutWorker" in command_line(table, p) for p in ray_processes), "no actors"
        os.killpg(run.pid, signal.SIGINT)
        out, err = run.communicate(timeout=180)  # a loaded CI machine once needed > 60 s
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 130, err[-3000:]
    assert (
        "interrupted (Ctrl-C); checkpoint written at iteration" in out
        and (run_dir / "checkpoint.pt").exists()
    )
    # the local Ray's logs end up in the run directory (moved from a short temp dir)
    assert not (run_dir / "ray").is_symlink()
    assert list((run_dir / "ray" / "session_latest" / "logs").glob("raylet.*"))
    deadline = time.monotonic() + 10
    while (left := ray_processes & set(process_table())) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = stop_processes(left)
    assert not left, f"Ray processes left after Ctrl-C: {left}"


def start_long_ray_navigation_run(run_dir: Path, **output) -> subprocess.Popen:
    """`metarl train` of a 500-iteration Navigation2D run on a local Ray, in its own session
    (output: DEVNULL unless given)."""
    command = [sys.executable, "-m", "metarl.cli", "train", str(ROOT / "configs/navigation.yaml")]
    for override in ("sampler=ray", "iterations=500", "meta_batch_size=4", "horizon=20"):
        command += ["--set", override]
    streams = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, **output}
    return subprocess.Popen(
        [*command, "--run-dir", str(run_dir), "--no-progress"],
        start_new_session=True,
        text=True,
        **streams,
    )


def test_a_lost_local_ray_stops_the_run_with_its_checkpoint_and_a_message(tmp_path):
    """The raylet of the local Ray dies: one message, exit 2, the last completed iteration
    saved. Ray itself ends the driver from C++ at its first object-store call after the
    raylet's death; metarl checks before its own calls, but under load Ray sometimes gets
    there first (README, "A local Ray that dies under the run"): exit 1, no message, Ray's
    reason in its driver log. The checkpoint is there either way."""
    run_dir = tmp_path / "run"
    run = start_long_ray_navigation_run(run_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_rows(run, run_dir, 2, timeout=90)
        table = process_table()
        raylets = {
            p for p in process_tree(roots={run.pid}) if "raylet/raylet" in command_line(table, p)
        }
        assert raylets, "no raylet"
        for pid in raylets:
            os.kill(pid, signal.SIGKILL)
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        stop_processes(process_tree(groups={run.pid}) - {run.pid})
    done = load_checkpoint(run_dir / "checkpoint.pt")["state"]["iteration"]
    assert done >= 1 and len(read_metrics(run_dir)) in (done, done + 1)
    if run.returncode == 1 and not err.strip():  # Ray ended the driver first (see above)
        logs = (run_dir / "ray" / "session_latest" / "logs").glob("python-core-driver-*.log")
        reason = "The connection to the plasma store is failed. Terminate the process"
        assert any(reason in log.read_text() for log in logs)
        return
    assert run.returncode == 2, err[-3000:]
    assert "metarl: error: the local Ray started for this run lost its raylet" in err
    assert "checkpoint written at iteration" in out
    # Ray's token-authentication notice about its own local Ray went to the run's log
    assert "Token authentication" not in err
    assert "Token authentication" in (run_dir / "ray" / "driver.log").read_text()


_DRIVER = """
import importlib.util, subprocess, sys, time
import psutil
spec = importlib.util.spec_from_file_location("ray_reaper", sys.argv[1])  # without torch
reaper_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reaper_module)
sleep = [sys.executable, "-c", "import time; time.sleep(120)"]
recorded, spared = subprocess.Popen(sleep), subprocess.Popen(sleep)
reaper = reaper_module.Reaper([psutil.Process(recorded.pid)])
print(recorded.pid, spared.pid, reaper.process.pid, flush=True)
time.sleep(120)
"""


def test_the_reaper_ends_recorded_processes_when_the_driver_is_killed():
    """As a SIGKILLed driver leaves the local Ray's agents alive for 60 s, this driver leaves
    two children that outlive it; the reaper ends the one it recorded, within a second."""
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, ray_reaper.__file__],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    recorded, spared, reaper = (int(pid) for pid in driver.stdout.readline().split())
    try:
        assert {recorded, spared, reaper} <= set(process_table())
        driver.kill()
        driver.wait()
        start = time.monotonic()
        while recorded in process_table() and not is_zombie(recorded):
            assert time.monotonic() - start < 5, "the recorded process outlived its driver"
            time.sleep(0.05)
        assert spared in process_table() and not is_zombie(spared)  # never recorded: kept
    finally:
        stop_processes({recorded, spared, reaper})


@pytest.mark.slow
def test_a_killed_driver_leaves_no_ray_processes(tmp_path):
    """SIGKILL of `metarl train` with a local Ray: without the reaper, ray::DashboardAgent and
    ray::RuntimeEnvAgent lived on for 60 s (measured); now nothing is left within 10 s."""
    run_dir = tmp_path / "run"
    run = start_long_ray_navigation_run(run_dir)
    try:
        wait_for_rows(run, run_dir, 2, timeout=120)
        ray_processes = process_tree(roots={run.pid}) - {run.pid}
        table = process_table()
        assert any("DashboardAgent" in command_line(table, p) for p in ray_processes)
        run.kill()
        run.wait()
        deadline = time.monotonic() + 10
        while (left := ray_processes & set(process_table())) and time.monotonic() < deadline:
            left = {p for p in left if not is_zombie(p)}
            time.sleep(0.2)
        left = {p for p in left if not is_zombie(p)}
        names = {command_line(process_table(), p)[:40] for p in left}
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        stop_processes(process_tree(groups={run.pid}) - {run.pid})
    assert not left, f"Ray processes alive 10 s after the driver was killed: {names}"


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
