"""Supervised runs that go wrong: non-finite training stops naming the key and keeps the last
finite checkpoint; Ctrl-C and SIGTERM write a checkpoint; Omniglot data found from anywhere."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import wait_for_rows

import metarl.supervised.trainer as supervised_trainer
from metarl.checkpoints import load_checkpoint
from metarl.cli import main
from metarl.config_validation import load_config
from metarl.supervised.config import SupervisedConfig
from metarl.supervised.problems import build_model, memory_estimate, parameter_count

ROOT = Path(__file__).resolve().parents[1]
SINUSOID = str(ROOT / "configs" / "sinusoid.yaml")
SMALL = ["torch_threads=1", "val_interval=5", "val_tasks=4", "log_interval=1", "eval_shots=[10]"]


def train_args(run_dir: Path, *overrides: str) -> list[str]:
    sets = [arg for o in (*SMALL, *overrides) for arg in ("--set", o)]
    return ["train", SINUSOID, *sets, "--run-dir", str(run_dir), "--no-progress"]


def all_finite(state: dict) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in state.values())


def test_an_inner_step_that_diverges_at_once_stops_naming_inner_lr(tmp_path, capsys):
    """The issue's case: inner_lr=1000000 exited 0 with NaN in checkpoint.pt and best.pt."""
    run_dir = tmp_path / "run"
    assert main(train_args(run_dir, "inner_lr=1000000", "iterations=50")) == 2
    out, err = capsys.readouterr()
    assert err.strip() == (
        "metarl: error: iteration 1: the training loss is not finite (loss inf); the inner step "
        "diverged at once: lower inner_lr (now 1e+06) (checkpoint written at iteration 0: "
        f"{run_dir / 'checkpoint.pt'})"
    )
    assert "stopped: non-finite values; checkpoint written at iteration 0" in out
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    assert checkpoint["iteration"] == 0 and all_finite(checkpoint["model_state"])
    assert not (run_dir / "best.pt").exists()  # never validated


@pytest.mark.parametrize("broken", ["gradient", "parameter"])
def test_a_later_divergence_keeps_the_last_finite_parameters(tmp_path, monkeypatch, capsys, broken):
    """A NaN gradient at iteration 4: nothing is stepped and checkpoint.pt holds the parameters
    of iteration 3, equal to a clean 3-iteration run's. An inf parameter after the step of
    iteration 4: the model is unusable, so checkpoint.pt keeps iteration 2 (written every 2)."""
    clean = tmp_path / "clean"
    assert main(train_args(clean, "iterations=3", "val_interval=100")) == 0
    original_step, calls = supervised_trainer.checked_step, []

    def breaking_step(optimizer, loss):
        calls.append(loss)
        first = optimizer.param_groups[0]["params"][0]
        if len(calls) == 4 and broken == "gradient":
            first.grad[0] = math.nan
        original_step(optimizer, loss)
        if len(calls) == 4 and broken == "parameter":
            with torch.no_grad():
                first[0] = math.inf
            original_step(optimizer, loss)  # the check after a step sees it

    monkeypatch.setattr(supervised_trainer, "checked_step", breaking_step)
    run_dir = tmp_path / "run"
    args = train_args(run_dir, "iterations=10", "val_interval=100", "checkpoint_interval=2")
    assert main(args) == 2
    out, err = capsys.readouterr()
    kept = 3 if broken == "gradient" else 2
    assert (
        "metarl: error: iteration 4: the " in err and "lower inner_lr (now 0.01) or meta_lr" in err
    )
    assert f"checkpoint written at iteration {kept}" in out
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    assert checkpoint["iteration"] == kept and all_finite(checkpoint["model_state"])
    if broken == "gradient":
        reference = load_checkpoint(clean / "checkpoint.pt")["model_state"]
        for name, value in reference.items():
            assert torch.equal(checkpoint["model_state"][name], value), name


def test_a_multitask_baseline_with_a_huge_step_size_stops_naming_meta_lr(tmp_path, capsys):
    run_dir = tmp_path / "run"
    sets = ["algorithm=multitask", "multitask_models=4", "multitask_batch=5", "meta_lr=1.0e+30"]
    assert main(train_args(run_dir, *sets, "iterations=20")) == 2
    err = capsys.readouterr().err
    assert "the step size is too large: lower meta_lr (now 1e+30)" in err
    if (run_dir / "checkpoint.pt").exists():
        assert all_finite(load_checkpoint(run_dir / "checkpoint.pt")["model_state"])


@pytest.mark.parametrize(
    "number, code, reason",
    [(signal.SIGINT, 130, "interrupted (Ctrl-C)"), (signal.SIGTERM, 143, "stopped by SIGTERM")],
)
def test_a_stop_writes_a_checkpoint_and_says_so(tmp_path, number, code, reason):
    run_dir = tmp_path / "run"
    args = train_args(run_dir, "iterations=1000000", "checkpoint_interval=1000000")
    run = subprocess.Popen(
        [sys.executable, "-m", "metarl.cli", *args],
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_rows(run, run_dir, 20, timeout=120)
        run.send_signal(number)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == code, err[-2000:]
    assert "Traceback" not in err
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    assert f"{reason}; checkpoint written at iteration {checkpoint['iteration']}" in out
    assert checkpoint["iteration"] >= 20 and all_finite(checkpoint["model_state"])


def test_the_shipped_omniglot_configs_find_their_data_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/omniglot here
    for name in ("omniglot_5way1shot", "omniglot_5way5shot", "omniglot_20way1shot"):
        config = load_config(SupervisedConfig, ROOT / "configs" / f"{name}.yaml", [])
        assert Path(config.data_path) == ROOT / "data" / "omniglot"
    # on the command line a relative path is the shell's: relative to the working directory
    (tmp_path / "mine").symlink_to(ROOT / "data" / "omniglot")
    path = ROOT / "configs" / "omniglot_5way1shot.yaml"
    assert load_config(SupervisedConfig, path, ["data_path=mine"]).data_path == "mine"


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("sinusoid", []),
        ("sinusoid", ["algorithm=oracle"]),
        ("sinusoid", ["algorithm=context", "context_dim=3"]),
        ("sinusoid", ["hidden_sizes=[7, 5, 3]"]),
        ("omniglot_5way1shot", []),
        ("omniglot_5way1shot", ["algorithm=context"]),
        ("omniglot_20way1shot", ["model=mlp"]),
    ],
)
def test_the_memory_estimate_counts_the_parameters_build_model_makes(name, overrides):
    config = load_config(SupervisedConfig, ROOT / "configs" / f"{name}.yaml", overrides)
    assert parameter_count(config) == sum(p.numel() for p in build_model(config).parameters())
    assert memory_estimate(config) >= 4 * parameter_count(config) * config.meta_batch_size


def test_a_stop_inside_a_step_finishes_that_iteration_and_checkpoints_it(
    tmp_path, monkeypatch, capsys
):
    """SIGINT arriving in iteration 7's meta-step: the checkpoint is the uninterrupted run's
    after 7 iterations, bitwise (the stop used to cut the step, and once left vmap's tensors
    in the model, so that no checkpoint could be written)."""
    clean = tmp_path / "clean"
    assert main(train_args(clean, "iterations=7", "checkpoint_interval=1000000")) == 0
    reference = load_checkpoint(clean / "checkpoint.pt")
    real_step, calls = supervised_trainer.adam_meta_step, []

    def step_interrupted_in_iteration_7(model, batch, config, optimizer):
        calls.append(1)
        if len(calls) == 7:
            os.kill(os.getpid(), signal.SIGINT)  # handled at once, before the step runs
        return real_step(model, batch, config, optimizer)

    monkeypatch.setattr(supervised_trainer, "adam_meta_step", step_interrupted_in_iteration_7)
    run_dir = tmp_path / "run"
    assert main(train_args(run_dir, "iterations=1000", "checkpoint_interval=1000000")) == 130
    assert len(calls) == 7
    assert "interrupted (Ctrl-C); checkpoint written at iteration 7" in capsys.readouterr().out
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    assert checkpoint["iteration"] == 7
    for name, value in reference["model_state"].items():
        assert torch.equal(checkpoint["model_state"][name], value), name
