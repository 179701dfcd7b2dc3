"""What a new user sees: the start block, progress within an iteration, what eval evaluated,
and an adaptation figure whose axis fits the methods that matter."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from helpers import small_navigation_config

from metarl.checkpoints import load_checkpoint
from metarl.cli import main
from metarl.comparisons import describe_checkpoint
from metarl.config import TrainConfig
from metarl.config_validation import load_config
from metarl.experiment import build_policy, iteration_tasks, sampler_settings
from metarl.plotting import plot_adaptation
from metarl.policies import policy_params
from metarl.progress import env_steps_per_iteration, sampler_plan, sampler_ready, start_block
from metarl.resuming import TrainingState
from metarl.sampling.local import LocalSampler
from metarl.trainer import resume, train

ROOT = Path(__file__).parents[1]
TINY = ["meta_batch_size=4", "rollouts_per_task=5", "horizon=20", "hidden_sizes=[16, 16]"]
TINY += ["torch_threads=1"]


def rows_of(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


# ---- the start block -----------------------------------------------------------------


def test_start_block_names_the_run_directory_its_cost_and_the_resume_point(tmp_path, capsys):
    run_dir = tmp_path / "run"
    sets = [a for s in [*TINY, "inner_steps=2", "iterations=2"] for a in ("--set", s)]
    args = ["train", str(ROOT / "configs/navigation.yaml"), *sets, "--run-dir", str(run_dir)]
    assert main([*args, "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"run directory:   {run_dir}"
    assert lines[1] == f"TensorBoard:     tensorboard --logdir {run_dir}"
    # 4 tasks x 5 rollouts x 20 steps x (2 inner steps + validation)
    assert lines[2] == (
        "per iteration:   4 tasks x 5 rollouts x 20 steps x 3 phases = up to 1,200 env steps"
    )
    assert lines[3] == "iterations:      2 (maml, metarl/Navigation2D-v0)"
    assert lines[4] == "sampler:         local: 400 envs stepped together in this process"
    assert lines[5] == (
        f"stopping:        Ctrl-C keeps a checkpoint; continue with metarl train --resume {run_dir}"
    )
    rows = rows_of(run_dir)
    assert 0.9 * 1200 <= int(rows[0]["env_steps"]) <= 1200  # episodes rarely end early here

    assert main(["train", "--resume", str(run_dir), "--set", "iterations=3", "--no-progress"]) == 0
    resumed = capsys.readouterr().out.splitlines()
    assert resumed[0] == f"run directory:   {run_dir}"
    assert resumed[3] == "iterations:      3 (maml, metarl/Navigation2D-v0)"
    wall = float(rows[1]["wall_s"])
    assert resumed[6] == (
        f"resuming:        at iteration 2 of 3, {int(rows[1]['env_steps']):,} env steps and "
        f"0:00:{round(wall):02d} of training done"
    )


def test_start_block_of_ray_and_of_the_baselines_and_the_paper_ant_cost(tmp_path):
    config = small_navigation_config(sampler="ray", ray_address="10.0.0.1:6379")
    block = start_block(config, tmp_path / "my run", TrainingState()).splitlines()
    assert block[1] == f"TensorBoard:     tensorboard --logdir '{tmp_path / 'my run'}'"
    cluster = "ray: one worker per CPU on the Ray cluster at 10.0.0.1:6379 (connecting)"
    assert block[4] == f"sampler:         {cluster}"
    local_ray = dataclasses.replace(config, ray_address=None, num_workers=3)
    assert "ray: 3 workers on a local Ray" in start_block(local_ray, tmp_path, TrainingState())
    # the pretrained baseline samples theta's rollouts only: one phase of 4 x 5 x 20
    pretrain = dataclasses.replace(config, algorithm="pretrain")
    assert "x 1 phase = up to 400 env steps" in start_block(pretrain, tmp_path, TrainingState())
    # the main job of the README: 40 tasks x 40 rollouts x 200 steps x 2 phases
    ant_dir = load_config(TrainConfig, ROOT / "configs/ant_dir.yaml")
    assert env_steps_per_iteration(ant_dir) == 640_000

    class Workers:
        num_workers = 3

    assert sampler_ready(Workers(), 5.04) == "Ray workers:     3 ready after 5.0 s"
    assert sampler_ready(object(), 0.1) is None  # the local sampler starts nothing


def test_the_start_block_names_the_physics_threads():
    config = load_config(
        TrainConfig,
        ROOT / "configs/ant_dir_small.yaml",
        ["sampler=local", "physics_threads=2", "num_envs=200"],
    )
    assert sampler_plan(config) == (
        "local: 200 envs stepped together in this process, their physics over 2 threads"
    )


# ---- progress within an iteration ----------------------------------------------------


def test_sampling_progress_counts_each_wave_and_changes_nothing():
    config = small_navigation_config()  # 4 tasks x 5 rollouts x 20 steps, one inner step
    policy = build_policy(config)
    params, tasks = policy_params(policy), iteration_tasks(config, 0)
    calls = []
    with_progress = LocalSampler(sampler_settings(config), policy, num_envs=10)  # 2 tasks a wave
    batch = with_progress.sample(params, tasks, 0, lambda *done: calls.append(done))
    without = LocalSampler(sampler_settings(config), policy, num_envs=10).sample(params, tasks, 0)

    from helpers import assert_meta_batches_equal

    assert_meta_batches_equal(batch, without)
    train, valid = batch.train[0], batch.valid
    first_two = train.select([0, 1]).num_steps
    assert calls == [
        (first_two, 10),
        (train.num_steps, 20),
        (train.num_steps + valid.select([0, 1]).num_steps, 30),
        (batch.env_steps, 40),
    ]


def test_progress_bar_shows_rollouts_and_env_steps_of_the_iteration(tmp_path, capsys):
    run_dir = train(small_navigation_config(iterations=2), tmp_path / "run", show_progress=True)
    shown = capsys.readouterr().err.replace("\r", "\n").splitlines()
    before = 0
    for row in rows_of(run_dir):  # 4 tasks x 5 rollouts x 2 phases, and the steps they took
        steps, before = int(row["env_steps"]) - before, int(row["env_steps"])
        assert any(f"iteration {row['iteration']} sampling: " in line for line in shown)
        meta_step = [line for line in shown if f"iteration {row['iteration']} meta-step" in line]
        assert "100%" in meta_step[0] and "40/40 rollouts" in meta_step[0]
        assert f"{steps:,} env steps" in meta_step[0]
    assert any("meta-iterations: 100%" in line and "2/2" in line for line in shown)


# ---- what eval evaluated -------------------------------------------------------------


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """A 6-iteration Navigation2D run whose best iteration is not its last."""
    root = tmp_path_factory.mktemp("first_use")
    run_dir = train(
        small_navigation_config(iterations=6, seed=5), root / "run", show_progress=False
    )
    scores = [float(r["return_post_1"]) for r in rows_of(run_dir)]
    return run_dir, scores.index(max(scores))


def evaluate(capsys, *args: str) -> tuple[list[str], dict]:
    out = Path(args[0]).parent / "eval_out"
    assert main(["eval", *args, "--tasks", "3", "--steps", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    return printed, json.loads((out / "eval.json").read_text())


def test_eval_of_a_run_directory_says_which_checkpoint_and_iteration(short_run, capsys):
    run_dir, best_iteration = short_run
    printed, default = evaluate(capsys, str(run_dir))
    done = "the run has done 6 of 6 iterations"
    named = f"{run_dir / 'best.pt'} (iteration {best_iteration}, best checkpoint; {done})"
    assert printed[0] == f"evaluating {named}"
    assert f"maml: {named}" in printed  # repeated under the table
    assert default["methods"]["maml"]["source"] == named

    printed, best_file = evaluate(capsys, str(run_dir / "best.pt"))
    assert best_file["methods"]["maml"]["mean"] == default["methods"]["maml"]["mean"]

    printed, last = evaluate(capsys, str(run_dir), "--checkpoint", "last")
    last_named = f"{run_dir / 'checkpoint.pt'} (iteration 6, last checkpoint; {done})"
    assert printed[0] == f"evaluating {last_named}"


def test_a_best_checkpoint_from_before_a_resume_reports_the_run_progress(short_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(short_run[0], run_dir)
    resume(run_dir, {"iterations": 7}, show_progress=False)
    best = load_checkpoint(run_dir / "best.pt")
    assert best["config"]["iterations"] == 6  # saved before the resume
    described = describe_checkpoint(run_dir / "best.pt", best)
    assert described.endswith("best checkpoint; the run has done 7 of 7 iterations)")
    # baselines are trained with the run's config as it is now: 7 iterations, not 6
    args = ["--tasks", "2", "--steps", "0", "--no-progress", "--out", str(tmp_path / "eval")]
    assert main(["eval", str(run_dir), "--baselines", "oracle", *args]) == 0
    oracle = load_checkpoint(run_dir / "baselines/oracle/checkpoint.pt")
    assert oracle["config"]["iterations"] == 7 and oracle["state"]["iteration"] == 7
    (run_dir / "checkpoint.pt").unlink()  # no run beside it: nothing said about progress
    assert describe_checkpoint(run_dir / "best.pt", best).endswith(", best checkpoint)")


def test_eval_checkpoint_choice_errors_name_the_path(short_run, tmp_path, capsys):
    run_dir, _ = short_run
    assert main(["eval", str(run_dir / "best.pt"), "--checkpoint", "last"]) == 2
    assert f"{run_dir / 'best.pt'} is not a directory" in capsys.readouterr().err
    empty = tmp_path / "unfinished"
    empty.mkdir()
    (empty / "checkpoint.pt").write_bytes((run_dir / "checkpoint.pt").read_bytes())
    assert main(["eval", str(empty)]) == 2
    assert f"{empty} has no best.pt (--checkpoint best); try --checkpoint last" in (
        capsys.readouterr().err
    )


# ---- the adaptation figure -----------------------------------------------------------


def synthetic_eval(random_mean: list[float]) -> dict:
    """Navigation2D-like curves: MAML, pretrained, context and oracle near the top."""
    curves = {
        "maml": ([-20.2, -4.8, -2.2, -1.4], [3.8, 1.5, 0.7, 0.1]),
        "pretrained": ([-19.3, -7.8, -7.2, -6.3], [3.5, 1.6, 1.6, 1.6]),
        "random": (random_mean, [10.9, 14.0, 8.7, 7.4]),
        "context": ([-19.4, -6.3, -3.3, -1.9], [3.5, 2.1, 1.3, 0.7]),
        "oracle": ([-0.68] * 4, [0.04] * 4),
    }
    methods = {m: {"steps": [0, 1, 2, 3], "mean": v, "ci95": c} for m, (v, c) in curves.items()}
    return {"env": "metarl/Navigation2D-v0", "methods": methods}


def test_adaptation_axis_fits_the_methods_that_matter_not_random_init():
    document = synthetic_eval([-151.94, -129.75, -96.04, -76.16])
    figure, axis = plt.subplots()
    plot_adaptation(axis, [("run", document)])
    low, high = axis.get_ylim()
    # the lowest band is MAML's step 0 (-24.0), the highest the oracle's (-0.64)
    assert low <= -20.2 - 3.8 and high >= -0.68 + 0.04
    assert high - low <= 1.2 * ((-0.64) - (-24.0))  # not stretched towards -152
    assert low > -76.16  # random init's best point lies below the axis
    texts = [t.get_text() for t in axis.texts]
    assert texts == ["-151.9", "-129.8", "-96.0", "-76.2"]  # each marked with its value
    labels = axis.get_legend_handles_labels()[1]
    assert "random init (off the axis: values at the marks)" in labels
    plt.close(figure)

    near = synthetic_eval([-22.0, -15.0, -10.0, -8.0])  # random within the range: drawn as is
    figure, axis = plt.subplots()
    plot_adaptation(axis, [("run", near)])
    assert not axis.texts and "random init" in axis.get_legend_handles_labels()[1]
    plt.close(figure)
