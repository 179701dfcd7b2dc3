"""Checkpoints and exact resume: after Ctrl-C, a crash or a move elsewhere (a committed run
directory included), a resumed run's numbers are an uninterrupted run's; refused edits and
corrupted checkpoints; the best checkpoint."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import checkpointed_navigation_config as small_config
from helpers import metrics_without_timings as metrics

import metarl
import metarl.meta_iteration as meta_iteration_module
import metarl.trainer as trainer_module
from metarl.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from metarl.cli import main
from metarl.trainer import resume, train


def interrupt_at(monkeypatch, iteration: int, error: BaseException):
    """Make the meta-step of `iteration` raise `error` (as Ctrl-C or a crash would)."""
    real_meta_step = meta_iteration_module.meta_step
    calls = {"count": 0}

    def meta_step(*args, **kwargs):
        if calls["count"] == iteration:
            raise error
        calls["count"] += 1
        return real_meta_step(*args, **kwargs)

    monkeypatch.setattr(meta_iteration_module, "meta_step", meta_step)


# ---- checkpoints and resume ----------------------------------------------------------


def test_resume_after_ctrl_c_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    config = small_config()
    straight = metrics(train(config, tmp_path / "straight", show_progress=False))

    interrupt_at(monkeypatch, 3, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed", show_progress=False)
    monkeypatch.undo()
    checkpoint = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert checkpoint["state"]["iteration"] == 3  # Ctrl-C saved the last completed iteration
    assert len(metrics(tmp_path / "resumed")) == 3

    resume(tmp_path / "resumed", show_progress=False)
    assert metrics(tmp_path / "resumed") == straight  # bitwise: the CSV holds repr(float)
    final_straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["policy"]
    final_resumed = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["policy"]
    for name, value in final_straight.items():
        assert torch.equal(value, final_resumed[name]), name


def test_resume_after_a_hard_crash_redoes_iterations_after_the_checkpoint(tmp_path, monkeypatch):
    """A killed process leaves rows logged after its last checkpoint; resume replaces them."""
    config = small_config()
    straight = metrics(train(config, tmp_path / "straight", show_progress=False))

    real_save = trainer_module.save_checkpoint

    def save_until_crash(path, payload):  # a SIGKILL writes nothing on the way out
        if payload["state"]["iteration"] <= 2 or Path(path).name == "best.pt":
            return real_save(path, payload)
        return None

    monkeypatch.setattr(trainer_module, "save_checkpoint", save_until_crash)
    interrupt_at(monkeypatch, 3, RuntimeError("killed"))
    with pytest.raises(RuntimeError, match="killed"):
        train(config, tmp_path / "crashed", show_progress=False)
    monkeypatch.undo()
    assert len(metrics(tmp_path / "crashed")) == 3  # iteration 2 logged after the checkpoint
    assert load_checkpoint(tmp_path / "crashed" / "checkpoint.pt")["state"]["iteration"] == 2

    resume(tmp_path / "crashed", show_progress=False)
    assert metrics(tmp_path / "crashed") == straight


def test_cli_resume_can_extend_a_finished_run_and_nothing_else(tmp_path, capsys):
    run_dir = train(small_config(iterations=2), tmp_path / "run", show_progress=False)
    assert main(["train", "--resume", str(run_dir), "--set", "iterations=3", "--no-progress"]) == 0
    assert [int(r["iteration"]) for r in metrics(run_dir)] == [0, 1, 2]
    assert main(["train", "--resume", str(run_dir), "--set", "gamma=0.5"]) == 2
    assert "['gamma'] cannot change in a resumed run" in capsys.readouterr().err
    assert main(["train", "--resume", str(run_dir), "--set", "iterations=ten"]) == 2
    assert "'iterations': expected an integer, got 'ten'" in capsys.readouterr().err


def test_run_settings_may_change_on_resume_without_changing_results(tmp_path, monkeypatch):
    """Moving a run (more envs at once, other threads, another checkpoint interval) keeps it."""
    config = small_config()
    straight = metrics(train(config, tmp_path / "straight", show_progress=False))
    interrupt_at(monkeypatch, 2, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "moved", show_progress=False)
    monkeypatch.undo()
    moved = {"num_envs": 7, "torch_threads": 2, "checkpoint_every": 1, "sampler": "local"}
    resume(tmp_path / "moved", moved, show_progress=False)
    assert metrics(tmp_path / "moved") == straight
    assert "num_envs: 7" in (tmp_path / "moved" / "config.yaml").read_text()


def test_resume_refuses_an_edited_config_and_another_version(tmp_path, monkeypatch):
    run_dir = train(small_config(iterations=2), tmp_path / "run", show_progress=False)
    config_file = run_dir / "config.yaml"
    original = config_file.read_text()
    config_file.write_text(original.replace("gamma: 0.99", "gamma: 0.9"))
    with pytest.raises(CheckpointError, match=r"config in \['gamma'\]"):
        resume(run_dir, show_progress=False)
    config_file.write_text(original)

    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    with monkeypatch.context() as patch:  # as if written by an older metarl, same algorithm
        patch.setattr(metarl, "__version__", "0.0.1")
        save_checkpoint(run_dir / "checkpoint.pt", checkpoint)
    resume(run_dir, {"iterations": 3}, show_progress=False)  # a version bump strands nothing

    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    with monkeypatch.context() as patch:  # an older algorithm: resuming would mix the two
        patch.setattr(metarl, "__version__", "0.0.1")
        patch.setattr(metarl, "ALGORITHM_VERSION", metarl.ALGORITHM_VERSION - 1)
        save_checkpoint(run_dir / "checkpoint.pt", checkpoint)
    with pytest.raises(CheckpointError, match="written by metarl 0.0.1 with algorithm version"):
        resume(run_dir, {"iterations": 4}, show_progress=False)


def test_a_run_from_before_a_config_key_existed_resumes(tmp_path):
    """Keys added to the config since a run started take their defaults, in the YAML and the
    checkpoint alike, so the run continues under the newer metarl."""
    run_dir = train(small_config(iterations=2), tmp_path / "run", show_progress=False)
    config_file = run_dir / "config.yaml"
    config_file.write_text(
        "\n".join(
            line for line in config_file.read_text().splitlines() if "ray_dashboard" not in line
        )
    )
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    del checkpoint["config"]["ray_dashboard"]
    for key in ("metarl_version", "algorithm_version"):
        checkpoint.pop(key)
    save_checkpoint(run_dir / "checkpoint.pt", checkpoint)
    resume(run_dir, {"iterations": 3}, show_progress=False)
    assert len(metrics(run_dir)) == 3


def test_a_crash_while_writing_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"value": torch.arange(3)})

    def crash(*args, **kwargs):
        raise OSError("disk died during rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk died"):
        save_checkpoint(path, {"value": torch.arange(5)})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["value"], torch.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary left


def test_a_truncated_or_corrupted_checkpoint_is_refused_whole(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"value": torch.arange(1000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated checkpoint"):
        load_checkpoint(path)
    corrupted = bytearray(data)
    corrupted[-10] ^= 0xFF
    path.write_bytes(bytes(corrupted))
    with pytest.raises(CheckpointError, match="hash mismatch"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a metarl checkpoint"):
        load_checkpoint(path)


def test_best_checkpoint_holds_the_best_scoring_meta_parameters(tmp_path):
    run_dir = train(small_config(iterations=4), tmp_path / "run", show_progress=False)
    rows = metrics(run_dir)
    scores = [float(r["return_post_1"]) for r in rows]
    best = load_checkpoint(run_dir / "best.pt")
    assert best["state"]["iteration"] == int(np.argmax(scores))
    assert best["state"]["best_return"] == max(scores)


# ---- committed run directories (benchmarks/runs) ----------------------------------------

COMMITTED = ("config.yaml", "metrics.csv", "checkpoint.pt", "best.pt", "tensorboard")


def test_a_committed_run_directory_resumes_exactly_elsewhere(tmp_path):
    """What a clone holds of a run (no lock, no Ray logs, another path) continues it exactly."""
    config = small_config(iterations=3)
    straight = metrics(train(config, tmp_path / "straight", show_progress=False))
    started = train(dataclasses.replace(config, iterations=2), tmp_path / "here", False)
    (started / "ray").mkdir()  # what .gitignore leaves out
    clone = tmp_path / "clone" / "benchmarks" / "runs" / "nav"
    clone.mkdir(parents=True)
    for name in COMMITTED:
        source = started / name
        if source.is_dir():
            shutil.copytree(source, clone / name)
        else:
            shutil.copy2(source, clone / name)
    assert main(["train", "--resume", str(clone), "--set", "iterations=3", "--no-progress"]) == 0
    assert metrics(clone) == straight
