"""Evaluation against baselines (and its plot), every algorithm through the trainer, and
every committed policy evaluated."""

from __future__ import annotations

import csv
import dataclasses
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import checkpointed_navigation_config as small_config
from helpers import metrics_without_timings as metrics

from metarl.checkpoints import load_checkpoint
from metarl.cli import main
from metarl.experiment import held_out_tasks
from metarl.trainer import train


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
    assert set(document) == {
        "env",
        "tasks",
        "steps",
        "rollouts",
        "seed",
        "methods",
        "task_parameters",
    }
    # the held-out tasks, in per_task's order: the goals of the evaluation's seed stream
    assert document["task_parameters"] == held_out_tasks(small_config().env, 12, 0)
    assert all(len(task["goal"]) == 2 for task in document["task_parameters"])
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
            "episode_means",
            "per_task_terms",
        }
        assert result["steps"] == [0, 1, 2]
        assert len(result["per_task"]) == 12 and all(len(r) == 3 for r in result["per_task"])
        np.testing.assert_allclose(result["mean"], np.mean(result["per_task"], axis=0))
        # what the return is made of: Navigation2D's one reward term is all of it
        means = result["episode_means"]
        assert set(means) == {"episode_length", "reward_distance"}
        np.testing.assert_allclose(means["reward_distance"], result["mean"], rtol=1e-5)
        terms = result["per_task_terms"]
        assert set(terms) == {"reward_distance"}
        np.testing.assert_allclose(terms["reward_distance"], result["per_task"], rtol=1e-5)
        assert all(0 < n <= 100 for n in means["episode_length"])
    maml_result, oracle_result = document["methods"]["maml"], document["methods"]["oracle"]
    assert maml_result["step_sizes"] == [0.1, 0.05]  # the paper's evaluation step sizes
    assert maml_result["mean"][1] > maml_result["mean"][0]  # one gradient step helps
    assert not oracle_result["adapted"] and oracle_result["step_sizes"] == []
    assert len(set(oracle_result["mean"])) == 1  # the same policy at every step
    assert len(set(oracle_result["episode_means"]["episode_length"])) == 1
    assert "mean episode length" in printed

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


# ---- committed policies (benchmarks/runs) -----------------------------------------------


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


def test_evaluated_episodes_say_what_each_return_is_made_of():
    """HalfCheetah never terminates: every episode lasts the horizon, and the reward terms'
    means add up to the mean return at every step (the oracle's repeat unadapted)."""
    from metarl.config import TrainConfig
    from metarl.config_validation import config_from_dict
    from metarl.evaluation import evaluate_method, random_policy
    from metarl.experiment import held_out_tasks

    values = {"env": "metarl/HalfCheetahVel-v0", "horizon": 15, "sampler": "local"}
    config = config_from_dict(TrainConfig, values)
    policy, tasks = random_policy(config), held_out_tasks(config.env, 3, 0)
    for method in ("maml", "oracle"):
        with torch.no_grad():
            curve = evaluate_method(method, policy, config, tasks, 2, 2, 0, "test")
        means, returns = curve.episode_means, np.mean(curve.per_task, axis=0)
        assert means["episode_length"] == [15.0, 15.0, 15.0]
        terms = [v for k, v in means.items() if k.startswith("reward_")]
        assert len(terms) >= 2  # forward and control
        np.testing.assert_allclose(np.sum(terms, axis=0), returns, rtol=1e-4, atol=1e-4)
        # task by task: each task's terms add up to its return, and average to the means
        by_task = curve.per_task_terms
        assert set(by_task) == {k for k in means if k.startswith("reward_")}
        assert np.shape(by_task["reward_forward"]) == (3, 3)
        total = np.sum([by_task[k] for k in by_task], axis=0)
        np.testing.assert_allclose(total, curve.per_task, rtol=1e-4, atol=1e-4)
        for name, values in by_task.items():
            np.testing.assert_allclose(np.mean(values, axis=0), means[name], rtol=1e-5)
    assert len(set(means["reward_forward"])) == 1  # the oracle: one policy at every step
    assert np.ptp(curve.per_task_terms["reward_ctrl"], axis=1).max() == 0  # and per task


ANT_VEL = Path(__file__).parents[1] / "benchmarks" / "runs" / "ant_vel" / "checkpoint.pt"


@pytest.mark.skipif(not ANT_VEL.exists(), reason="the committed AntVel run")
def test_eval_on_another_env_runs_every_episode_to_the_horizon(tmp_path, capsys):
    """`metarl eval --env metarl/AntVelNoTermination-v0` of the committed AntVel-v0 policy:
    the same held-out task, but no episode ends before the horizon, while on AntVel-v0
    the same policy's episodes end early (131 steps on average in README's evaluation)."""
    lengths = {}
    for env in (None, "metarl/AntVelNoTermination-v0"):
        out = tmp_path / str(env).replace("/", "_")
        args = ["eval", str(ANT_VEL), "--tasks", "1", "--steps", "1", "--rollouts", "4"]
        args += ["--no-progress", "--out", str(out)] + (["--env", env] if env else [])
        assert main(args) == 0, capsys.readouterr().err
        document = json.loads((out / "eval.json").read_text())
        assert document["env"] == (env or "metarl/AntVel-v0")
        lengths[env] = document["methods"]["maml"]["episode_means"]["episode_length"]
    assert lengths["metarl/AntVelNoTermination-v0"] == [200.0, 200.0]
    assert min(lengths[None]) < 200.0


@pytest.mark.parametrize(
    "env, why",
    [
        ("metarl/AntDir-v0", "observations, actions or tasks differ"),  # direction tasks
        ("metarl/HalfCheetahVel-v0", "observations, actions or tasks differ"),
        ("metarl/Ant-v9", "is not a metarl env"),
    ],
)
@pytest.mark.skipif(not ANT_VEL.exists(), reason="the committed AntVel run")
def test_eval_refuses_an_env_whose_spaces_or_tasks_differ(env, why, tmp_path, capsys):
    args = ["eval", str(ANT_VEL), "--env", env, "--tasks", "1", "--out", str(tmp_path)]
    assert main(args) == 2
    assert why in capsys.readouterr().err
    assert not (tmp_path / "eval.json").exists()


def test_a_tuned_step_size_at_the_edge_of_its_grid_is_flagged():
    from metarl.evaluation import grid_edge_note

    grid = [0.01, 0.1, 1.0]
    assert grid_edge_note(0.1, grid) == ""
    assert "smallest" in grid_edge_note(0.01, grid) and "smaller" in grid_edge_note(0.01, grid)
    assert "largest" in grid_edge_note(1.0, grid) and "larger" in grid_edge_note(1.0, grid)
    assert grid_edge_note(0.5, [0.5]) == ""  # a grid of one size has no edge to report


def test_eval_tunes_the_baselines_over_a_given_grid_and_refuses_a_bad_one(
    trained_navigation, tmp_path, capsys
):
    maml, _ = trained_navigation
    args = ["eval", str(maml), "--tasks", "2", "--steps", "1", "--rollouts", "2"]
    args += ["--no-progress", "--baselines", "random", "--out", str(tmp_path)]
    assert main([*args, "--finetune-step-sizes", "0.3,0.7"]) == 0
    tuning = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("random: fine")
    )
    assert "0.3: " in tuning and "0.7: " in tuning and "0.01: " not in tuning  # only the grid
    random = json.loads((tmp_path / "eval.json").read_text())["methods"]["random"]
    scores = random["tuning_scores"]  # the grid's scores, as printed; the best one chosen
    assert list(scores) == ["0.3", "0.7"]
    assert random["step_sizes"] == [float(max(scores, key=scores.get))]
    for size, score in scores.items():
        assert f"{size}: {score:.2f}" in tuning
    for bad, why in (("0.1,x", "comma-separated numbers"), ("0.1,-1", "must be > 0")):
        assert main([*args, "--finetune-step-sizes", bad]) == 2
        assert why in capsys.readouterr().err


def test_eval_takes_mamls_step_sizes_and_refuses_bad_ones(trained_navigation, tmp_path, capsys):
    maml, _ = trained_navigation
    args = ["eval", str(maml), "--tasks", "2", "--steps", "3", "--rollouts", "2"]
    args += ["--no-progress", "--out", str(tmp_path)]
    assert main(args) == 0
    default = json.loads((tmp_path / "eval.json").read_text())["methods"]["maml"]
    assert default["step_sizes"] == [0.1, 0.05, 0.05]  # the run's eval_step_sizes
    assert main([*args, "--eval-step-sizes", "0.3,0.02"]) == 0
    given = json.loads((tmp_path / "eval.json").read_text())["methods"]["maml"]
    assert given["step_sizes"] == [0.3, 0.02, 0.02]  # step k the k-th, the last repeating
    assert given["per_task"][0][0] == default["per_task"][0][0]  # the same policy before
    assert given["per_task"][0][1] != default["per_task"][0][1]  # another step after
    capsys.readouterr()
    for bad, why in (("0.1,x", "--eval-step-sizes takes comma-separated"), ("-1", "must be > 0")):
        assert main([*args, "--eval-step-sizes", bad]) == 2
        assert why in capsys.readouterr().err
