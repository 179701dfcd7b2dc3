"""Configuration: every shipped config loads, one exists for every paper experiment, and a bad
value, an unknown key or a non-empty run directory is refused naming it, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import metarl_envs
from metarl.cli import is_supervised_config, main
from metarl.config import TrainConfig
from metarl.config_validation import ConfigError, load_config

ALL_CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
CONFIGS = [p for p in ALL_CONFIGS if not is_supervised_config(p)]  # the RL ones


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=[p.stem for p in ALL_CONFIGS])
def test_every_config_loads(path):
    if is_supervised_config(path):
        from metarl.supervised.config import SupervisedConfig

        assert isinstance(load_config(SupervisedConfig, path), SupervisedConfig)
        return
    env = yaml.safe_load(path.read_text())["env"]
    if metarl_envs.missing_extra(env):  # Meta-World configs need the extra, and say so
        with pytest.raises(ConfigError, match=r'pip install -e "\.\[metaworld\]"'):
            load_config(TrainConfig, path)
        return
    config = load_config(TrainConfig, path)
    assert isinstance(config, TrainConfig)
    assert config.inner_lr == 0.1 and config.max_kl == 0.01  # the paper's settings


def test_config_files_exist_for_every_paper_experiment():
    names = {p.stem for p in CONFIGS}
    assert {"navigation", "halfcheetah_vel", "halfcheetah_dir", "ant_vel", "ant_dir"} <= names


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["iterations=0"], "'iterations' must be >= 1"),
        (["iterations=2.5"], "'iterations': expected an integer"),
        (["hvp=magic"], "'hvp': 'magic' is not one of ['finite_difference'"),
        (["activation=gelu"], "'activation': 'gelu' is not one of ['relu', 'tanh']"),
        (["env=metarl/Nope-v0"], "'env': 'metarl/Nope-v0' is not one of"),
        (["first_order=yes please"], "'first_order': expected true or false"),
        (["hvp_subsample=0"], "'hvp_subsample' must be in (0, 1]"),
        (["hidden_sizes=[64, 0]"], "'hidden_sizes'"),
        (["learning_rate=0.1"], "unknown key(s) ['learning_rate']"),
        (["iterations"], "expected key=value"),
        (["max_kl=.nan"], "'max_kl': expected a finite number"),
        (["physics_threads=0"], "'physics_threads' must be in [1, 1,024], got 0"),
        (
            ["env=metarl/Navigation2D-v0", "sampler=local", "physics_threads=2"],
            "'physics_threads': metarl/Navigation2D-v0 steps its copies in one thread",
        ),
        (["sampler=ray", "physics_threads=2"], "'physics_threads' is for sampler: local"),
    ],
)
def test_bad_config_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_config(TrainConfig, CONFIGS[0], overrides)
    assert message in str(error.value)


def test_unknown_key_in_yaml_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("env: metarl/Navigation2D-v0\nmeta_batch: 10\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['meta_batch'\]"):
        load_config(TrainConfig, path)


def test_cli_reports_config_errors_before_any_work(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["train", str(CONFIGS[0]), "--set", "gamma=2", "--run-dir", str(run_dir)])
    assert code == 2
    assert "'gamma' must be in (0, 1]" in capsys.readouterr().err
    assert not run_dir.exists()


def test_cli_refuses_a_non_empty_run_directory(tmp_path, capsys):
    (tmp_path / "something").write_text("keep me")
    config = str(Path(__file__).parents[1] / "configs" / "navigation.yaml")
    assert main(["train", config, "--run-dir", str(tmp_path), "--no-progress"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "something").read_text() == "keep me"
