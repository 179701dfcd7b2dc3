"""The local Ray a run starts, over the run's life: Ctrl-C stops both with a checkpoint, a
lost raylet stops the run with its checkpoint and a message, and a killed driver leaves no
Ray process behind (the reaper ends what it recorded).

Every process a test starts is stopped by that test, and checked to be gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import read_metrics, wait_for_rows
from processes import command_line, is_zombie, process_table, process_tree, stop_processes

from metarl.checkpoints import load_checkpoint
from metarl.sampling import ray_reaper

ROOT = Path(__file__).parents[1]


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


def test_starting_a_local_ray_keeps_the_commands_sigterm_handler(tmp_path):
    """`ray.init` installs a SIGTERM handler that exits with code 15: a SIGTERM while a Ray
    run started, or repeated after its stop, ended `metarl train` with 15 and no message.
    The handler the command installed (metarl.runtime.stop_process_on_signals) stays."""
    from metarl.sampling.ray_cluster import connect

    def commands_handler(signal_number, frame):
        pass

    previous = signal.signal(signal.SIGTERM, commands_handler)
    try:
        connection = connect(None, tmp_path / "ray-logs", dashboard=False)
        try:
            assert connection.owns_ray
            assert signal.getsignal(signal.SIGTERM) is commands_handler
        finally:
            connection.close()
    finally:
        signal.signal(signal.SIGTERM, previous)
