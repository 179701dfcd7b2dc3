"""Run directories and checkpoints under misuse: crafted files, two processes, bad input
(stop signals: tests/test_stop_signals.py)."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import pickle
import socket
import subprocess
import sys
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


# ---- bad inputs: one message, exit 2, nothing lost or left behind --------------------------


def test_resume_with_a_non_integer_iterations_names_the_key_and_changes_nothing(tmp_path, capsys):
    run_dir = train(small_navigation_config(iterations=1), tmp_path / "run", show_progress=False)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert main(["train", "--resume", str(run_dir), "--set", "iterations=ten"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("metarl: error: ") and "key 'iterations': expected an integer" in err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("config", ["navigation.yaml", "sinusoid.yaml"])
def test_a_file_given_as_run_directory_is_one_message(tmp_path, capsys, config):
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    args = ["train", str(ROOT / "configs" / config), "--run-dir", str(path), "--no-progress"]
    assert main(args) == 2
    assert f"run directory {str(path)!r} is a file, not a directory" in capsys.readouterr().err
    assert path.read_text() == "keep me"


def test_blank_lines_at_the_end_of_metrics_csv_do_not_stop_a_resume(tmp_path):
    run_dir = train(small_navigation_config(iterations=2), tmp_path / "run", show_progress=False)
    with (run_dir / "metrics.csv").open("a") as handle:
        handle.write("\n\n")
    assert main(["train", "--resume", str(run_dir), "--set", "iterations=3", "--no-progress"]) == 0
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(lines) == 4 and all(lines)  # header and 3 rows, no blank line kept
    assert [row["iteration"] for row in read_rows(run_dir / "metrics.csv")[1]] == ["0", "1", "2"]


def test_a_run_refused_before_its_first_iteration_leaves_a_reusable_directory(tmp_path, capsys):
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    navigation, run_dir = str(ROOT / "configs" / "navigation.yaml"), tmp_path / "run"
    common = ["--set", "iterations=1", "--set", "meta_batch_size=2", "--set", "horizon=10"]
    refused = ["--set", "sampler=ray", "--ray-address", f"127.0.0.1:{port}"]
    args = ["train", navigation, *common, "--run-dir", str(run_dir), "--no-progress"]
    assert main([*args, *refused]) == 2
    assert f"ray_address '127.0.0.1:{port}': cannot reach" in capsys.readouterr().err
    assert [p.name for p in run_dir.iterdir()] == [".lock"]  # no config.yaml
    assert main(args) == 0  # the same directory takes the run
    assert load_checkpoint(run_dir / "checkpoint.pt")["state"]["iteration"] == 1


def test_a_full_disk_stops_with_one_message_and_keeps_the_last_checkpoint(
    tmp_path, monkeypatch, capsys
):
    """ENOSPC while writing iteration 2's checkpoint: `cannot write PATH: REASON`, exit 2,
    checkpoint.pt still holds iteration 1 and loads, no temporary file left."""
    run_dir = tmp_path / "run"
    checkpoints_written = []
    real_fsync = os.fsync

    def fsync(fd):  # the disk fills up after the first checkpoint.pt
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(".checkpoint.pt."):
            if checkpoints_written:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            checkpoints_written.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    navigation = str(ROOT / "configs" / "navigation.yaml")
    sets = ["iterations=3", "meta_batch_size=2", "rollouts_per_task=2", "horizon=10"]
    args = ["train", navigation, *(a for s in sets for a in ("--set", s)), "--no-progress"]
    assert main([*args, "--run-dir", str(run_dir)]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert (
        lines[-1] == f"metarl: error: cannot write {run_dir}/checkpoint.pt: No space left on device"
    )
    assert "Traceback" not in err
    monkeypatch.undo()
    assert load_checkpoint(run_dir / "checkpoint.pt")["state"]["iteration"] == 1
    assert not list(run_dir.glob(".*.tmp"))


def test_eval_refuses_an_unusable_out_before_evaluating(tmp_path, monkeypatch, capsys):
    run_dir = train(small_navigation_config(iterations=1), tmp_path / "run", show_progress=False)
    import metarl.evaluation

    def evaluation_ran(*args, **kwargs):
        raise AssertionError("the evaluation ran before --out was checked")

    monkeypatch.setattr(metarl.evaluation, "run_evaluation", evaluation_ran)
    existing = tmp_path / "eval.json"
    existing.write_text("{}")
    assert main(["eval", str(run_dir), "--out", str(existing)]) == 2
    assert f"--out {str(existing)!r} is a file" in capsys.readouterr().err
    assert main(["eval", str(run_dir), "--out", str(existing / "sub")]) == 2
    assert f"cannot write {existing / 'sub'}" in capsys.readouterr().err
    assert existing.read_text() == "{}"


def test_a_diverging_inner_step_names_inner_lr_and_advises_no_resume(tmp_path, capsys):
    navigation = str(ROOT / "configs" / "navigation.yaml")
    sets = ["inner_lr=1.0e+10", "meta_batch_size=2", "rollouts_per_task=2", "horizon=10"]
    run_dir = tmp_path / "run"
    args = ["train", navigation, *(a for s in sets for a in ("--set", s)), "--no-progress"]
    assert main([*args, "--run-dir", str(run_dir)]) == 2
    out, err = capsys.readouterr()
    assert err.strip() == (
        "metarl: error: iteration 0: after inner step 1 of size 1e+10, the policy's actions are "
        "not finite: the step size is too large (training: inner_lr; evaluation: eval_step_sizes)"
    )
    stop_message = out.split("stopped by", 1)[-1]  # the start block names --resume for Ctrl-C
    assert "checkpoint written at iteration 0" in out and "--resume" not in stop_message
