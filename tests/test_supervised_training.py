"""Short supervised runs through `metarl train` / `metarl eval`: they learn, and write a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from metarl.checkpoints import load_checkpoint
from metarl.cli import main

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "omniglot"


def train(config: str, run_dir: Path, *overrides: str) -> None:
    sets = [arg for o in ("torch_threads=1", *overrides) for arg in ("--set", o)]
    args = ["train", str(ROOT / "configs" / config), *sets, "--run-dir", str(run_dir)]
    assert main([*args, "--no-progress"]) == 0


def evaluate(checkpoint: Path, out: Path, tasks: int) -> dict:
    assert main(["eval", str(checkpoint), "--tasks", str(tasks), "--out", str(out)]) == 0
    rows = json.loads((out / "eval.json").read_text())["rows"]
    return {(r["shots"], r["step"], r["metric"]): r for r in rows}


def test_sinusoid_maml_adapts_far_better_than_the_pretrained_baseline(tmp_path):
    common = ["iterations=2000", "val_interval=1000", "eval_shots=[10]", "eval_steps=10"]
    train("sinusoid.yaml", tmp_path / "maml", *common)
    train("sinusoid.yaml", tmp_path / "pretrain", *common, "algorithm=pretrain")
    maml = evaluate(tmp_path / "maml" / "checkpoint.pt", tmp_path / "maml-eval", 200)
    pretrain = evaluate(tmp_path / "pretrain" / "checkpoint.pt", tmp_path / "pre-eval", 200)
    for steps in (1, 10):
        ours, theirs = maml[(10, steps, "mse")], pretrain[(10, steps, "mse")]
        assert ours["mean"] + ours["ci95"] < 0.6 * (theirs["mean"] - theirs["ci95"])
    # MAML keeps improving with more steps than it was trained for (1)
    assert maml[(10, 10, "mse")]["mean"] < 0.8 * maml[(10, 1, "mse")]["mean"]
    # both start from about the MSE of predicting 0 for A sin(x - phi): E[A^2]/2 ~ 4.2
    assert 2.0 < maml[(10, 0, "mse")]["mean"] < 6.0

    run = tmp_path / "pretrain"
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    assert checkpoint["kind"] == "supervised" and checkpoint["iteration"] == 2000
    assert checkpoint["eval_lr"] == min(checkpoint["lr_scores"], key=checkpoint["lr_scores"].get)
    assert (run / "best.pt").is_file() and (run / "config.yaml").is_file()
    assert any((run / "tensorboard").iterdir())
    lines = (run / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("iteration,tasks,wall_s,tasks_per_s,loss,val_loss_pre")
    assert len(lines) == 1 + 2000 // 100  # log_interval: 100


def test_omniglot_short_run_beats_chance_clearly(tmp_path):
    train(
        "omniglot_5way1shot.yaml",
        tmp_path / "run",
        f"data_path={DATA}",
        "iterations=150",
        "meta_batch_size=8",
        "val_interval=75",
        "val_tasks=40",
    )
    result = evaluate(tmp_path / "run" / "best.pt", tmp_path / "eval", 60)
    before, after = result[(1, 0, "accuracy")], result[(1, 1, "accuracy")]
    assert abs(before["mean"] - 0.2) < 0.06  # labels are permuted per task: chance before
    assert after["mean"] - after["ci95"] > 0.5  # 5-way chance is 0.2
    assert (tmp_path / "eval" / "eval.csv").read_text().startswith("shots,step,metric,mean")


def test_bad_data_path_and_used_run_dir_fail_with_a_message(tmp_path, capsys):
    args = ["train", str(ROOT / "configs" / "omniglot_5way1shot.yaml"), "--no-progress"]
    run = tmp_path / "run"
    assert main([*args, "--set", "data_path=/no/such/folder", "--run-dir", str(run)]) == 2
    assert "data_path" in capsys.readouterr().err
    assert not run.exists()
    run.mkdir()
    (run / "something").write_text("x")
    assert main([*args, "--set", f"data_path={DATA}", "--run-dir", str(run)]) == 2
    assert "not empty" in capsys.readouterr().err


@pytest.mark.slow
def test_omniglot_5way1shot_reaches_90_percent(tmp_path):
    """About 8 minutes on one core: the benchmark's 5-way 1-shot scale."""
    train("omniglot_5way1shot.yaml", tmp_path / "run", f"data_path={DATA}", "iterations=1500")
    result = evaluate(tmp_path / "run" / "best.pt", tmp_path / "eval", 600)
    assert result[(1, 3, "accuracy")]["mean"] > 0.9


def test_smoke_omniglot_20way_and_mlp_configs_train_and_evaluate(tmp_path):
    tiny = ["iterations=2", "meta_batch_size=2", "val_tasks=4", "val_interval=2", "log_interval=1"]
    train("omniglot_20way1shot.yaml", tmp_path / "w20", f"data_path={DATA}", *tiny)
    result = evaluate(tmp_path / "w20" / "checkpoint.pt", tmp_path / "w20-eval", 4)
    assert set(step for _, step, _ in result) == set(range(6))  # 5 fine-tuning steps
    train("omniglot_5way1shot.yaml", tmp_path / "mlp", f"data_path={DATA}", "model=mlp", *tiny)
    evaluate(tmp_path / "mlp" / "checkpoint.pt", tmp_path / "mlp-eval", 4)
