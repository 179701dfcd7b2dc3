"""The locomotion runner's choice of checkpoint to evaluate, and what it records of it."""

import argparse
import importlib
from pathlib import Path

import pytest
import torch
import yaml
from helpers import load_benchmark

from metarl.checkpoints import save_checkpoint

ROOT = Path(__file__).parents[1]

locomotion = load_benchmark("locomotion")
locomotion_report = load_benchmark("locomotion_report")
sigma_pilot = load_benchmark("cheetah_sigma_pilot")
hvp_pilot = load_benchmark("hvp_subsample_pilot")
forks = importlib.import_module("locomotion_forks")  # the modules locomotion imported
locomotion_eval = importlib.import_module("locomotion_eval")


def test_a_group_evaluates_best_pt_unless_it_says_last():
    assert locomotion_eval.checkpoint_choice({}) == "best"
    assert locomotion_eval.checkpoint_choice({"checkpoint": "last"}) == "last"
    with pytest.raises(ValueError, match="use best or last"):
        locomotion_eval.checkpoint_choice({"checkpoint": "final"})


def test_every_shipped_group_names_a_valid_checkpoint():
    groups, _ = locomotion.load_runs()
    assert {locomotion_eval.checkpoint_choice(g) for g in groups.values()} <= {"best", "last"}


@pytest.mark.parametrize(
    "which, file, iteration", [("best", "best.pt", 48), ("last", "checkpoint.pt", 100)]
)
def test_the_summary_names_the_checkpoint_it_evaluated(
    tmp_path, monkeypatch, which, file, iteration
):
    monkeypatch.setattr(locomotion, "RUNS", tmp_path)
    config = {"meta_batch_size": 20, "rollouts_per_task": 20, "horizon": 200}
    state = {"iteration": 100, "env_steps": 15_000_000, "wall_s": 7200.0}
    save_checkpoint(tmp_path / "ant_vel/checkpoint.pt", {"config": config, "state": state})
    save_checkpoint(
        tmp_path / "ant_vel/best.pt", {"config": config, "state": {**state, "iteration": 48}}
    )
    run = locomotion.Run("ant_vel", "ant_vel", "maml", tmp_path / "c.yaml", {"iterations": 100})
    summary = locomotion_eval.run_summary(run, which, tmp_path)
    assert (summary["evaluated_checkpoint"], summary["evaluated_iteration"]) == (file, iteration)
    assert summary["iterations_done"] == 100 and summary["wall_hours"] == 2.0
    assert locomotion_report.evaluated_checkpoint(summary) == f"{file}: iteration {iteration}"


def test_a_group_can_give_the_baselines_tuning_grid():
    chosen = {role: Path(f"runs/{role}/checkpoint.pt") for role in ("maml", "pretrain", "oracle")}
    command = locomotion_eval.eval_command({}, chosen, "out", 40, 1)
    assert "--finetune-step-sizes" not in command  # the run's config's grid
    assert command[command.index("--baselines") + 1] == (
        "pretrained=runs/pretrain/checkpoint.pt,random,oracle=runs/oracle/checkpoint.pt"
    )
    grid = {"finetune_step_sizes": [0.002, 0.005, 0.01, 1]}
    command = locomotion_eval.eval_command(grid, chosen, "out", 40, 1)
    assert command[command.index("--finetune-step-sizes") + 1] == "0.002,0.005,0.01,1.0"
    for bad in ([], [0.01, -0.1], ["0.01"]):
        with pytest.raises(ValueError, match="finetune_step_sizes"):
            locomotion_eval.eval_command({"finetune_step_sizes": bad}, chosen, "out", 40, 1)


def test_every_shipped_tuning_grid_is_valid():
    groups, _ = locomotion.load_runs()
    chosen = {role: Path(role) for role in ("maml", "pretrain", "oracle")}
    for group in groups.values():
        locomotion_eval.eval_command(group, chosen, "out", 40, 1)  # raises on a bad grid


def test_results_written_before_the_choice_existed_read_as_best_pt():
    assert locomotion_report.evaluated_checkpoint({"best_iteration": 98}) == "best.pt: iteration 98"


def test_eval_and_report_take_only_the_groups_named():
    groups = {"halfcheetah_dir": {}, "ant_dir": {}, "ant_vel": {}}
    assert list(locomotion.selected_groups(groups, "")) == list(groups)
    assert list(locomotion.selected_groups(groups, "ant_vel,ant_dir")) == ["ant_dir", "ant_vel"]
    with pytest.raises(SystemExit, match="no group named ant_dir_oracle"):
        locomotion.selected_groups(groups, "ant_dir,ant_dir_oracle")  # a run, not a group


def test_train_and_status_take_the_runs_and_groups_named():
    _, runs = locomotion.load_runs()
    names = [r.name for r in locomotion.selected(runs, "ant_vel,halfcheetah_dir_oracle")]
    assert sorted(names) == [
        "ant_vel",
        "ant_vel_oracle",
        "ant_vel_pretrain",
        "halfcheetah_dir_oracle",
    ]
    assert len(locomotion.selected(runs, "")) == len(runs)
    with pytest.raises(SystemExit, match="no run or group named halfcheetah_dri"):
        locomotion.selected(runs, "halfcheetah_dri")  # a typo trained nothing, silently


def test_roles_take_a_groups_maml_run_alone_or_its_baselines():
    _, runs = locomotion.load_runs()
    maml = [r.name for r in locomotion.selected(runs, "ant_vel,halfcheetah_dir", "maml")]
    assert sorted(maml) == ["ant_vel", "halfcheetah_dir"]
    baselines = [r.name for r in locomotion.selected(runs, "ant_vel", "pretrain,oracle")]
    assert sorted(baselines) == ["ant_vel_oracle", "ant_vel_pretrain"]
    assert all(r.algorithm == "oracle" for r in locomotion.selected(runs, "", "oracle"))
    with pytest.raises(SystemExit, match="no role mlam"):
        locomotion.selected(runs, "ant_vel", "mlam")


def test_train_set_gives_every_run_a_run_setting(tmp_path, monkeypatch):
    extra = locomotion.parse_overrides(["physics_threads=2", "device=cuda"])
    assert extra == {"physics_threads": 2, "device": "cuda"}
    args = argparse.Namespace(set=["physics_threads"], only="", hours=0.0, jobs=1, nice=0)
    with pytest.raises(SystemExit, match="--set 'physics_threads': expected key=value"):
        locomotion.train(args)
    monkeypatch.setattr(locomotion, "RUNS", tmp_path)
    (tmp_path / "ant_vel").mkdir()
    (tmp_path / "ant_vel" / "checkpoint.pt").write_bytes(b"")  # a run to resume
    run = locomotion.Run("ant_vel", "ant_vel", "maml", tmp_path / "c.yaml", {"iterations": 100})
    run.run_settings = {"sampler": "local", "physics_threads": 1, **extra}
    command = run.command()
    assert command[command.index("--resume") + 1] == str(tmp_path / "ant_vel")
    assert "--set=physics_threads=2" in command and '--set=device="cuda"' in command
    assert "--set=physics_threads=1" not in command


def test_sigma_pilot_pairs_the_forward_terms_iteration_by_iteration(tmp_path):
    header = "iteration,reward_forward_pre,reward_forward_post_1,reward_ctrl_pre,log_std\n"
    for name, shift in (("reference", 0.0), ("pilot", 1.0)):
        rows = [f"{i},{-i},{2 * i + shift * i},-45,0" for i in range(12)]
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.csv").write_text(header + "\n".join(rows) + "\n")
    reference = sigma_pilot.read(tmp_path / "reference", 10)
    pilot = sigma_pilot.read(tmp_path / "pilot", 10)
    assert len(pilot["forward_gain"]) == 10  # iterations 0-9 only
    assert pilot["forward_gain"].tolist() == [4.0 * i for i in range(10)]  # post - pre
    mean, half = sigma_pilot.pilot_minus_reference(pilot, reference)["forward_gain"]
    # differences 0, 1, ..., 9: mean 4.5, sd 3.02765, t(0.975, 9) = 2.262157, n = 10
    assert mean == pytest.approx(4.5)
    assert half == pytest.approx(2.262157 * 3.0276504 / 10**0.5, rel=1e-6)
    with pytest.raises(SystemExit, match="12 of 20 iterations"):
        sigma_pilot.read(tmp_path / "pilot", 20)


def test_a_pilot_starts_from_the_reference_config_with_its_changes_or_resumes(tmp_path):
    config = {"env": "metarl/HalfCheetahDir-v0", "iterations": 300, "hvp_subsample": 0.25}
    run_dir = tmp_path / "pilots" / "full"
    command = sigma_pilot.pilot_command(config, run_dir, 80, {"hvp_subsample": 1.0})
    written = yaml.safe_load((tmp_path / "pilots" / "full.yaml").read_text())
    assert written == {**config, "iterations": 80, "hvp_subsample": 1.0}
    assert command[-3:] == [str(tmp_path / "pilots" / "full.yaml"), "--run-dir", str(run_dir)]
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"")
    command = sigma_pilot.pilot_command(config, run_dir, 90, {"hvp_subsample": 1.0})
    assert command[-3:] == ["--resume", str(run_dir), "--set=iterations=90"]


def test_hvp_subsample_pilot_compares_blocks_and_the_last_20_common_iterations(tmp_path):
    header = "iteration,return_post_1,reward_forward_pre,reward_forward_post_1,line_search_steps\n"
    for name, length, shift in (("full", 25, 1.0), ("sub25", 23, 0.0)):
        rows = [f"{i},{i + shift * i},0,{i},{2 + shift}" for i in range(length)]
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.csv").write_text(header + "\n".join(rows) + "\n")
    names = ("full", "sub25")
    result = hvp_pilot.compare(
        hvp_pilot.read(tmp_path / "full"), hvp_pilot.read(tmp_path / "sub25"), names
    )
    assert result["common_iterations"] == 23 and result["blocks"] == ["0-9", "10-19", "20-22"]
    column = result["return_post_1"]
    assert column["full_block_means"] == [9.0, 29.0, 42.0]  # 2i averaged over each block
    assert column["sub25_block_means"] == [4.5, 14.5, 21.0]
    # full - sub25 = i; the last 20 common iterations are 3..22: mean 12.5, sd 5.91608
    last = column["full_minus_sub25_last_20"]
    assert last["mean"] == pytest.approx(12.5)
    assert last["ci95"] == pytest.approx(2.093024 * 5.9160798 / 20**0.5, rel=1e-6)
    assert result["line_search_steps"]["full_minus_sub25_all"]["mean"] == pytest.approx(1.0)
    with pytest.raises(SystemExit, match="the comparison needs 20"):
        hvp_pilot.compare(
            hvp_pilot.read(tmp_path / "full"),
            {k: v[:15] for k, v in hvp_pilot.read(tmp_path / "sub25").items()},
            names,
        )
    (tmp_path / "full" / "metrics.csv").write_text(header + "1,0,0,0,2\n")
    with pytest.raises(SystemExit, match="does not hold iterations 0, 1, ... in order"):
        hvp_pilot.read(tmp_path / "full")


def test_hvp_subsample_pilot_reads_and_compares_from_a_fork_iteration(tmp_path):
    header = "iteration,return_post_1,reward_forward_pre,reward_forward_post_1,line_search_steps\n"
    (tmp_path / "run").mkdir()
    rows = [f"{i},{i},0,{i},2" for i in range(300, 325)]
    (tmp_path / "run" / "metrics.csv").write_text(header + "\n".join(rows) + "\n")
    run = hvp_pilot.read(tmp_path / "run", 300)
    assert run["return_post_1"].tolist() == list(range(300, 325))
    result = hvp_pilot.compare(run, run, ("full", "sub25"), 300)
    assert result["blocks"] == ["300-309", "310-319", "320-324"]
    assert result["return_post_1"]["full_block_means"][0] == pytest.approx(304.5)
    with pytest.raises(SystemExit, match="iterations 290, 291"):
        hvp_pilot.read(tmp_path / "run", 290)


def test_a_pilot_fork_resumes_the_checkpoint_with_its_own_subsample(tmp_path):
    from metarl.config import TrainConfig
    from metarl.config_validation import config_from_dict
    from metarl.experiment import build_policy
    from metarl.policies import policy_params
    from metarl.resuming import TrainingState, checkpoint_payload, resume_point

    config = config_from_dict(
        TrainConfig,
        {"env": "metarl/Navigation2D-v0", "hidden_sizes": [8, 8], "hvp_subsample": 0.25},
        "test",
    )
    params = policy_params(build_policy(config))
    state = TrainingState(iteration=7, env_steps=1234)
    save_checkpoint(tmp_path / "c.pt", checkpoint_payload(config, params, state))
    assert hvp_pilot.fork(tmp_path / "c.pt", tmp_path / "full", 1.0) == 7
    point = resume_point(tmp_path / "full")
    assert point.config.hvp_subsample == 1.0
    assert point.state == state
    for name, value in policy_params(point.policy).items():
        assert torch.equal(value, params[name])
    # an existing fork is left as it is (a pilot resumes it)
    assert hvp_pilot.fork(tmp_path / "c.pt", tmp_path / "full", 0.5) == 7
    assert resume_point(tmp_path / "full").config.hvp_subsample == 1.0


def test_a_forked_group_starts_from_the_committed_run_at_its_iteration(tmp_path, monkeypatch):
    import subprocess

    from metarl.checkpoints import CheckpointError
    from metarl.config import TrainConfig
    from metarl.config_validation import ConfigError, config_from_dict
    from metarl.experiment import build_policy
    from metarl.policies import policy_params
    from metarl.resuming import TrainingState, checkpoint_payload, fork_run, resume_point

    monkeypatch.setattr(locomotion, "RUNS", tmp_path / "benchmarks/runs")
    source = tmp_path / "benchmarks/runs/g1_pretrain"
    config = config_from_dict(
        TrainConfig,
        {"env": "metarl/Navigation2D-v0", "algorithm": "pretrain", "hidden_sizes": [8, 8]},
        "test",
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    params = {}
    for iteration in (5, 9):  # two commits of the source run; the fork wants the first
        params[iteration] = policy_params(build_policy(config))
        state = TrainingState(iteration=iteration, env_steps=100 * iteration)
        save_checkpoint(
            source / "checkpoint.pt", checkpoint_payload(config, params[iteration], state)
        )
        rows = "".join(f"{i},{10 * i}\n" for i in range(iteration))
        (source / "metrics.csv").write_text("iteration,return_pre\n" + rows)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", f"at {iteration}"], check=True)
    settings = {"algorithm": "pretrain", "hvp_subsample": 0.5, "iterations": 30}
    run = locomotion.Run("g2_pretrain", "g2", "pretrain", Path("c.yaml"), settings, {}, None)
    run.fork = {"group": "g1", "iteration": 5}
    assert forks.fork_from_history(run, tmp_path / "benchmarks/runs", tmp_path) == 5
    point = resume_point(run.run_dir)
    assert point.config.hvp_subsample == 0.5 and point.config.algorithm == "pretrain"
    assert point.state.iteration == 5 and point.state.env_steps == 500
    for name, value in policy_params(point.policy).items():
        assert torch.equal(value, params[5][name])
    metrics = (run.run_dir / "metrics.csv").read_text().splitlines()
    assert metrics == ["iteration,return_pre"] + [f"{i},{10 * i}" for i in range(5)]
    with pytest.raises(CheckpointError, match="holds a run already"):  # never overwritten
        forks.fork_from_history(run, tmp_path / "benchmarks/runs", tmp_path)
    with pytest.raises(ConfigError, match=r"no config keys \['hvp_subsampel'\]"):
        fork_run(source / "checkpoint.pt", tmp_path / "typo", {"hvp_subsampel": 1.0})
    per_role = locomotion.Run("g3_pretrain", "g3", "pretrain", Path("c.yaml"), settings, {}, None)
    per_role.fork = {"group": "g1", "iteration": {"maml": 5, "pretrain": 9}}
    assert forks.fork_from_history(per_role, tmp_path / "benchmarks/runs", tmp_path) == 9
    assert len((per_role.run_dir / "metrics.csv").read_text().splitlines()) == 1 + 9
    run.fork = {"group": "g1", "iteration": 7}
    with pytest.raises(SystemExit, match=r"never committed at iteration 7 .*\[5, 9\]"):
        forks.fork_from_history(run, tmp_path / "benchmarks/runs", tmp_path)


def test_baseline_set_gives_the_baselines_their_own_settings():
    _, runs = locomotion.load_runs()
    forked = {r.algorithm: r for r in runs if r.group == "halfcheetah_dir_paper_clock_full_hvp"}
    assert forked["maml"].settings["hvp_subsample"] == 1.0
    assert forked["pretrain"].settings["hvp_subsample"] == 0.25
    assert forked["oracle"].settings["meta_batch_size"] == 40
    assert forked["oracle"].fork["iteration"]["oracle"] == 300
    source = {r.algorithm: r for r in runs if r.group == "halfcheetah_dir_paper_clock"}
    for role in ("pretrain", "oracle"):  # unchanged: the source group's baselines, continued
        changed = {k: v for k, v in forked[role].settings.items() if k != "iterations"}
        assert changed == {k: v for k, v in source[role].settings.items() if k != "iterations"}
