"""Run directories and checkpoints under misuse: crafted files, two processes, signals."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import small_navigation_config

from metarl.checkpoints import FORMAT_VERSION, MAGIC, CheckpointError, load_checkpoint
from metarl.cli import main
from metarl.metrics import read_rows
from metarl.run_dir import RunDirLock
from metarl.trainer import train

ROOT = Path(__file__).parents[1]


class _RunsCode:
    """A pickle payload that, when unpickled, calls a function (here: creates a file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def crafted_checkpoint(path: Path, marker: Path) -> Path:
    """A file with a valid metarl header, length and SHA-256 around a code-running pickle."""
    buffer = io.BytesIO()
    torch.save({"kind": "rl", "payload": _RunsCode(marker)}, buffer, pickle_module=pickle)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest().encode()
    path.write_bytes(b"%s%d %d %s\n" % (MAGIC, FORMAT_VERSION, len(data), digest) + data)
    return path


def test_a_crafted_checkpoint_is_refused_and_its_code_does_not_run(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    path = crafted_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(CheckpointError, match="loading it would run code"):
        load_checkpoint(path)
    assert main(["eval", str(path)]) == 2
    assert "refused" in capsys.readouterr().err
    assert not marker.exists()
    # the same object pickled plainly does run code: the test's payload is a real one
    pickle.loads(pickle.dumps(_RunsCode(marker)))
    assert marker.exists()


def test_a_second_process_on_a_run_directory_is_refused_naming_the_holder(tmp_path, capsys):
    config = small_navigation_config(iterations=1)
    run_dir = train(config, tmp_path / "run", show_progress=False)
    with RunDirLock(run_dir):  # as a training process holds it
        assert main(["train", "--resume", str(run_dir), "--set", "iterations=2"]) == 2
        error = capsys.readouterr().err
        assert f"in use by another metarl process (PID {os.getpid()})" in error
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        with RunDirLock(fresh):
            navigation = str(ROOT / "configs" / "navigation.yaml")
            assert main(["train", navigation, "--run-dir", str(fresh), "--no-progress"]) == 2
            assert "in use by another metarl process" in capsys.readouterr().err
            assert [p.name for p in fresh.iterdir()] == [".lock"]  # nothing written
    rows_before = len(read_rows(run_dir / "metrics.csv")[1])
    assert rows_before == 1


def test_a_lock_left_by_a_killed_process_does_not_block_a_resume(tmp_path):
    run_dir = train(small_navigation_config(iterations=1), tmp_path / "run", show_progress=False)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from metarl.run_dir import RunDirLock; "
            f"RunDirLock({str(run_dir)!r}).acquire(); print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()  # SIGKILL: no cleanup, the lock file stays
    holder.wait()
    assert (run_dir / ".lock").exists()
    assert main(["train", "--resume", str(run_dir), "--set", "iterations=2", "--no-progress"]) == 0
    assert len(read_rows(run_dir / "metrics.csv")[1]) == 2


def start_training(run_dir: Path, *overrides: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "metarl.cli", "train", str(ROOT / "configs/navigation.yaml")]
    for override in ("iterations=500", "meta_batch_size=4", "horizon=20", *overrides):
        command += ["--set", override]
    return subprocess.Popen(
        [*command, "--run-dir", str(run_dir), "--no-progress"],
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_rows(run: subprocess.Popen, run_dir: Path, rows: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.poll() is None:
        metrics = run_dir / "metrics.csv"
        if metrics.exists() and len(read_rows(metrics)[1]) >= rows:
            return
        time.sleep(0.02)
    raise AssertionError(f"no {rows} rows within {timeout} s: {run.communicate()}")


@pytest.mark.parametrize(
    "signals, code, reason",
    [
        ([signal.SIGTERM], 143, "stopped by SIGTERM"),
        ([signal.SIGINT, signal.SIGINT], 130, "interrupted (Ctrl-C)"),  # 1 ms apart
        # pending together, Linux delivers SIGINT (2) before SIGTERM (15): the first to
        # arrive decides the exit code and the message
        ([signal.SIGTERM, signal.SIGINT, signal.SIGTERM], None, None),
    ],
    ids=["sigterm", "ctrl-c-twice", "mixed-repeats"],
)
def test_every_stop_writes_the_last_completed_iteration_and_says_so(
    tmp_path, signals, code, reason
):
    run_dir = tmp_path / "run"
    run = start_training(run_dir)
    try:
        wait_for_rows(run, run_dir, 2)
        for number in signals:
            os.kill(run.pid, number)
            time.sleep(0.001)
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    if code is None:
        code = run.returncode
        reason = {130: "interrupted (Ctrl-C)", 143: "stopped by SIGTERM"}.get(code)
    assert run.returncode == code, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert f"{reason}; checkpoint written at iteration" in out
    done = load_checkpoint(run_dir / "checkpoint.pt")["state"]["iteration"]
    rows = read_rows(run_dir / "metrics.csv")[1]
    # the last row may be logged before its iteration was committed: it is redone on resume
    assert done >= 1 and len(rows) in (done, done + 1)
    assert main(["train", "--resume", str(run_dir), "--set", f"iterations={done + 1}"]) == 0
