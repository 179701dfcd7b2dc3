"""Checkpoints, exact resume, evaluation against baselines, and plots."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import small_navigation_config

import metarl
import metarl.meta_iteration as meta_iteration_module
import metarl.trainer as trainer_module
from metarl.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from metarl.cli import main
from metarl.trainer import resume, train

TIMING = {"wall_s", "env_steps_per_s"}


def small_config(**changes):
    return small_navigation_config(**{**dict(seed=5, iterations=4, checkpoint_every=2), **changes})


def metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{k: v for k, v in r.items() if k not in TIMING and not k.endswith("_s")} for r in rows]


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


# ---- evaluation ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_navigation(tmp_path_factory):
    """A short MAML run and a short oracle run on Navigation2D."""
    root = tmp_path_factory.mktemp("navigation")
    config = small_config(
        iterations=20, meta_batch_size=10, rollouts_per_task=10, horizon=50, hidden_sizes=[32, 32]
    )
    maml = train(config, root / "maml", show_progress=False)
    oracle_config = dataclasses.replace(config, algorithm="oracle", iterations=5)
    oracle = train(oracle_config, root / "oracle", show_progress=False)
    return maml, oracle


def test_eval_adaptation_beats_no_adaptation_and_oracle_is_not_adapted(
    trained_navigation, tmp_path, capsys
):
    maml, oracle = trained_navigation
    out = tmp_path / "eval"
    args = ["eval", str(maml), "--tasks", "12", "--steps", "2", "--rollouts", "10"]
    assert main([*args, "--baselines", f"oracle={oracle}", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "step 0" in printed and "oracle" in printed

    document = json.loads((out / "eval.json").read_text())
    assert set(document) == {"env", "tasks", "steps", "rollouts", "seed", "methods"}
    assert set(document["methods"]) == {"maml", "oracle"}
    for result in document["methods"].values():
        assert set(result) == {
            "steps",
            "mean",
            "ci95",
            "step_sizes",
            "adapted",
            "source",
            "per_task",
        }
        assert result["steps"] == [0, 1, 2]
        assert len(result["per_task"]) == 12 and all(len(r) == 3 for r in result["per_task"])
        np.testing.assert_allclose(result["mean"], np.mean(result["per_task"], axis=0))
    maml_result, oracle_result = document["methods"]["maml"], document["methods"]["oracle"]
    assert maml_result["step_sizes"] == [0.1, 0.05]  # the paper's evaluation step sizes
    assert maml_result["mean"][1] > maml_result["mean"][0]  # one gradient step helps
    assert not oracle_result["adapted"] and oracle_result["step_sizes"] == []
    assert len(set(oracle_result["mean"])) == 1  # the same policy at every step

    with open(out / "eval.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and rows[0]["method"] == "maml"
    mean, low, high = (float(rows[1][k]) for k in ("mean_return", "ci95_low", "ci95_high"))
    assert low < mean < high


def test_eval_rejects_unknown_baselines_before_any_work(trained_navigation, capsys):
    maml, _ = trained_navigation
    assert main(["eval", str(maml), "--baselines", "pretrained,magic"]) == 2
    assert "unknown method 'magic'" in capsys.readouterr().err
    assert not (maml / "baselines").exists()


def test_plot_writes_a_png_of_the_expected_size(trained_navigation, tmp_path):
    maml, oracle = trained_navigation
    out = tmp_path / "eval"
    main(["eval", str(maml), "--tasks", "3", "--steps", "1", "--out", str(out)])
    figure = tmp_path / "figure.png"
    assert main(["plot", str(maml), str(out / "eval.json"), "-o", str(figure)]) == 0
    data = figure.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 480)  # two 6.4 x 4.8 inch panels at 100 dpi
    assert len(data) > 10_000


def test_plot_names_an_input_it_cannot_read(tmp_path, capsys):
    assert main(["plot", str(tmp_path), "-o", str(tmp_path / "x.png")]) == 2
    assert "no metrics.csv" in capsys.readouterr().err


@pytest.mark.parametrize("algorithm", ["maml", "pretrain", "oracle", "context"])
def test_smoke_every_algorithm_trains_through_the_same_trainer(tmp_path, algorithm):
    run_dir = train(
        small_config(algorithm=algorithm, iterations=1), tmp_path / "run", show_progress=False
    )
    columns = set(metrics(run_dir)[0])
    adapts = algorithm in ("maml", "context")
    assert ("return_post_1" in columns) == adapts
    policy = load_checkpoint(run_dir / "checkpoint.pt")["policy"]
    assert ("context" in policy) == (algorithm == "context")
    observation_dim = policy["layers.0.weight"].shape[1]
    # navigation: 2 coordinates, + the 2D goal for the oracle, + 4 context inputs
    assert observation_dim == {"maml": 2, "pretrain": 2, "oracle": 4, "context": 6}[algorithm]


def test_context_inner_loop_adapts_only_the_context_vector():
    from metarl.experiment import build_policy, sampler_settings
    from metarl.policies import policy_params
    from metarl.sampling.meta_batch import adapt_one_task
    from metarl.sampling.rollouts import RolloutKey, make_vector_env, rollout

    config = small_config(algorithm="context")
    policy = build_policy(config)
    settings = sampler_settings(config)
    assert settings.adapted_names == ("context",)
    env = make_vector_env(config.env, 10, settings.horizon)
    tasks = [{"goal": [0.3, 0.3]}, {"goal": [-0.3, 0.1]}]
    theta = policy_params(policy)
    key = RolloutKey(0, 0, 0, 0)
    rollouts = rollout(env, policy, theta, tasks, np.arange(2), 5, 20, key, settings.advantage)
    env.close()
    adapted = [adapt_one_task(policy, theta, False, rollouts, i, 0, settings) for i in (0, 1)]
    for name, value in theta.items():
        for task in adapted:
            changed = not torch.equal(task[name][0], value.detach())
            assert changed == (name == "context"), name
    assert not torch.equal(adapted[0]["context"], adapted[1]["context"])  # per-task z


def test_plot_reads_supervised_runs_and_evaluations(tmp_path):
    run = tmp_path / "sinusoid"
    run.mkdir()
    (run / "metrics.csv").write_text(
        "iteration,tasks,wall_s,loss_post,val_loss_pre,val_loss_post\n"
        "1,25,0.1,3.0,nan,nan\n2,50,0.2,2.0,4.0,1.5\n3,75,0.3,1.0,nan,nan\n"
    )
    rows = [
        {"shots": 10, "step": k, "metric": "mse", "mean": 3.0 / (k + 1), "ci95": 0.1}
        for k in range(3)
    ]
    (run / "eval.json").write_text(json.dumps({"problem": "sinusoid", "rows": rows}))
    figure = tmp_path / "sinusoid.png"
    assert main(["plot", str(run), "-o", str(figure)]) == 0
    assert struct.unpack(">II", figure.read_bytes()[16:24]) == (1280, 480)


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


@pytest.mark.parametrize(
    "best",
    sorted((Path(__file__).parents[1] / "benchmarks" / "runs").glob("*/best.pt")),
    ids=lambda path: path.parent.name,
)
def test_smoke_every_committed_policy_evaluates(best, tmp_path, capsys):
    """`metarl eval benchmarks/runs/NAME/best.pt` works on a fresh clone (one short task)."""
    checkpoint = load_checkpoint(best)
    assert checkpoint["kind"] == "rl"
    code = main(
        ["eval", str(best), "--tasks", "1", "--steps", "1", "--rollouts", "1", "--no-progress"]
        + ["--out", str(tmp_path)]
    )
    assert code == 0, capsys.readouterr().err
    document = json.loads((tmp_path / "eval.json").read_text())
    assert len(document["methods"]) == 1 and len(next(iter(document["methods"].values()))["mean"])
