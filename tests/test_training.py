"""The sampler, the config and the trainer: determinism, validation, run directory, learning."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import small_navigation_config

import metarl_envs
from metarl.cli import is_supervised_config, main
from metarl.config import TrainConfig
from metarl.config_validation import ConfigError, load_config
from metarl.episodes import MetaBatch
from metarl.experiment import build_policy, iteration_tasks, sampler_settings
from metarl.policies import GaussianMLPPolicy, gaussian_mlp, policy_params
from metarl.sampling.local import LocalSampler
from metarl.sampling.meta_batch import sample_meta_batch
from metarl.sampling.rollouts import WaveActions, make_vector_env
from metarl.trainer import train
from metarl.value_baseline import estimate_advantages

ALL_CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
CONFIGS = [p for p in ALL_CONFIGS if not is_supervised_config(p)]  # the RL ones
TIMING_COLUMNS = {"wall_s", "env_steps_per_s"}  # every *_s column is a duration too


small_config = small_navigation_config


def assert_meta_batches_equal(a: MetaBatch, b: MetaBatch) -> None:
    for left, right in zip(a.phases, b.phases, strict=True):
        for field in ("observations", "actions", "rewards", "mask", "advantages", "task_ids"):
            assert torch.equal(getattr(left, field), getattr(right, field)), field
        assert torch.equal(left.explained_variance, right.explained_variance)
        for term in left.reward_terms:
            assert torch.equal(left.reward_terms[term], right.reward_terms[term]), term


# ---- the local sampler ---------------------------------------------------------------


@pytest.mark.parametrize("env_id", ["metarl/Navigation2D-v0", "metarl/HalfCheetahVel-v0"])
def test_local_sampler_result_does_not_depend_on_envs_or_threads_stepped_at_once(env_id):
    config = small_config(env=env_id, inner_steps=2, horizon=15, rollouts_per_task=3)
    policy = build_policy(config)
    params = policy_params(policy)
    tasks = iteration_tasks(config, iteration=0)
    batches = []
    # one task per wave, two per wave, the whole meta-batch; and its physics over 2 threads
    shapes = [(3, 1), (6, 1), (12, 1)] + [(12, 2)] * ("Cheetah" in env_id)
    for num_envs, threads in shapes:
        sampler = LocalSampler(sampler_settings(config), policy, num_envs, threads)
        batches.append(sampler.sample(params, tasks, iteration=0))
        sampler.close()
    for batch in batches[1:]:
        assert_meta_batches_equal(batches[0], batch)
    # the inner steps changed the policy: post-adaptation rollouts differ from theta's
    assert not torch.equal(batches[0].train[0].actions, batches[0].valid.actions)


@pytest.mark.parametrize(
    "rollouts, observation_dim, hidden_sizes, activation, context",
    [
        (3, 17, [16, 16], "tanh", 0),  # shapes where unpadded baddbmm changed with the batch
        (2, 17, [100, 100], "relu", 0),
        (20, 2, [64, 64], "tanh", 0),
        (40, 27, [100, 100], "relu", 0),
        (5, 2, [16], "tanh", 4),
    ],
)
def test_a_tasks_actions_do_not_depend_on_the_tasks_beside_it(
    rollouts, observation_dim, hidden_sizes, activation, context
):
    """WaveActions computes each task's actions bitwise alike alone and in any wave."""
    policy = GaussianMLPPolicy(observation_dim, 6, hidden_sizes, activation, 0.0, context)
    generator = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    reference = None
    for size in (1, 2, 3, 5, 8, 13):
        for position in sorted({0, size // 2, size - 1}):
            # per-task parameters (as after an inner step), the same for our task
            stacks = {
                n: torch.randn(size, *p.shape, generator=generator)
                for n, p in policy.named_parameters()
            }
            for n, p in policy.named_parameters():
                stacks[n][position] = p.detach() * 1.5
            noise = rng.standard_normal((size, rollouts, 4, 6)).astype(np.float32)
            noise[position] = np.linspace(-1, 1, rollouts * 24, dtype=np.float32).reshape(
                rollouts, 4, 6
            )
            observations = rng.standard_normal((size, rollouts, observation_dim)).astype(np.float32)
            observations[position] = np.cos(np.arange(rollouts * observation_dim)).reshape(
                rollouts, observation_dim
            )
            actions = WaveActions(policy, stacks, range(size), noise)(observations, 2)[position]
            if reference is None:
                reference = actions
            assert torch.equal(actions, reference), (size, position)
    # and the padded batched computation is the policy's own (up to rounding)
    params = {n: p.detach() * 1.5 for n, p in policy.named_parameters()}
    obs = torch.from_numpy(np.cos(np.arange(rollouts * observation_dim, dtype=np.float32)))
    mean, log_std = gaussian_mlp(params, obs.reshape(rollouts, observation_dim), activation)
    eps = torch.linspace(-1, 1, rollouts * 24).reshape(rollouts, 4, 6)[:, 2]
    torch.testing.assert_close(reference, mean + eps * log_std.exp(), rtol=1e-5, atol=1e-5)


def test_tasks_sampled_in_chunks_equal_the_whole_meta_batch():
    """What the Ray sampler relies on: a task's rollouts depend on its id, not its companions."""
    config = small_config(inner_steps=2)
    policy = build_policy(config)
    params = policy_params(policy)
    settings = sampler_settings(config)
    tasks = iteration_tasks(config, iteration=1)
    env = make_vector_env(config.env, 20, settings.horizon)
    whole = sample_meta_batch(env, policy, params, tasks, np.arange(4), 1, settings)
    chunks = [
        sample_meta_batch(env, policy, params, tasks[i:j], np.arange(i, j), 1, settings)
        for i, j in [(0, 1), (1, 3), (3, 4)]
    ]
    env.close()
    assert_meta_batches_equal(whole, MetaBatch.concatenate(chunks))


@pytest.mark.parametrize("env_id", ["metarl/Navigation2D-v0", "metarl/AntDir-v0"])
def test_sampler_hands_over_the_advantages_of_its_own_rollouts(env_id):
    """Advantages are computed once, by the sampler: they are GAE against the value
    baseline fitted per task on the very rollouts they come with."""
    config = small_config(env=env_id, horizon=30, rollouts_per_task=4)
    policy = build_policy(config)
    sampler = LocalSampler(sampler_settings(config), policy, 16)
    batch = sampler.sample(policy_params(policy), iteration_tasks(config, 0), 0)
    sampler.close()
    for rollouts in batch.phases:
        for task in range(rollouts.num_tasks):
            one = rollouts.select([task])
            expected, explained = estimate_advantages(
                one.observations, one.rewards, one.mask, config.gamma, config.gae_lambda, True
            )
            torch.testing.assert_close(one.advantages, expected.float(), rtol=0, atol=1e-6)
            torch.testing.assert_close(one.explained_variance, explained)
        assert (rollouts.advantages[rollouts.mask == 0] == 0).all()
        # the reward terms add up to the rewards
        terms = sum(rollouts.reward_terms.values())
        torch.testing.assert_close(terms.float(), rollouts.episode_returns(), rtol=1e-5, atol=1e-4)


def test_different_seeds_give_different_rollouts():
    policy = build_policy(small_config())
    params = policy_params(policy)
    batches = []
    for seed in (0, 1):
        config = small_config(seed=seed)
        tasks = [{"goal": [0.2, -0.3]}] * 4
        sampler = LocalSampler(sampler_settings(config), policy, 20)
        batches.append(sampler.sample(params, tasks, iteration=0))
        sampler.close()
    assert not torch.equal(batches[0].valid.actions, batches[1].valid.actions)


# ---- configuration -------------------------------------------------------------------


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


# ---- the trainer ---------------------------------------------------------------------


def read_metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def without_timings(rows: list[dict]) -> list[dict]:
    return [
        {k: v for k, v in row.items() if k not in TIMING_COLUMNS and not k.endswith("_s")}
        for row in rows
    ]


def test_smoke_train_cli_writes_the_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    overrides = [
        "iterations=2",
        "meta_batch_size=4",
        "rollouts_per_task=5",
        "horizon=20",
        "inner_steps=2",
        "hidden_sizes=[16, 16]",
    ]
    args = ["train", str(Path(__file__).parents[1] / "configs" / "navigation.yaml")]
    for override in overrides:
        args += ["--set", override]
    assert main([*args, "--run-dir", str(run_dir), "--no-progress"]) == 0

    config = load_config(TrainConfig, run_dir / "config.yaml")
    assert config.iterations == 2 and config.inner_steps == 2 and config.hidden_sizes == [16, 16]
    rows = read_metrics(run_dir)
    assert [int(r["iteration"]) for r in rows] == [0, 1]
    required = {
        "iteration",
        "env_steps",
        "wall_s",
        "return_pre",
        "return_post_1",
        "return_post_2",
        "kl",
        "surrogate_before",
        "surrogate_after",
        "line_search_steps",
        "sampling_s",
        "update_s",
        # diagnostics: reward terms, episode length, value-baseline fit per phase, log-std, step
        "reward_distance_pre",
        "reward_distance_post_2",
        "episode_length_pre",
        "explained_variance_post_1",
        "log_std",
        "inner_step_norm",
    }
    assert required <= set(rows[0])
    for row in rows:
        for phase in ("pre", "post_1", "post_2"):  # Navigation2D's reward is one term
            assert float(row[f"reward_distance_{phase}"]) == pytest.approx(
                float(row[f"return_{phase}"]), rel=1e-6
            )
            assert 0 < float(row[f"episode_length_{phase}"]) <= 20
        assert float(row["inner_step_norm"]) > 0
    # 4 tasks x 5 rollouts x (2 inner steps + validation) x at most 20 steps
    assert 0 < int(rows[0]["env_steps"]) <= 4 * 5 * 3 * 20
    assert all(np.isfinite(float(r["kl"])) and float(r["kl"]) <= 0.01 * 1.0001 for r in rows)
    events = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_same_seed_gives_identical_metrics(tmp_path):
    config = small_config(iterations=3)
    first = read_metrics(train(config, tmp_path / "a", show_progress=False))
    second = read_metrics(train(config, tmp_path / "b", show_progress=False))
    assert without_timings(first) == without_timings(second)
    other = read_metrics(
        train(dataclasses.replace(config, seed=4), tmp_path / "c", show_progress=False)
    )
    assert without_timings(first) != without_timings(other)


def test_trainer_updates_the_policy_within_the_trust_region(tmp_path):
    rows = read_metrics(train(small_config(iterations=3), tmp_path / "run", show_progress=False))
    accepted = [row for row in rows if int(row["accepted"])]
    assert accepted, "no step was accepted: nothing was checked"
    for row in accepted:
        assert 0 < float(row["kl"]) <= 0.01 * 1.0001
        assert float(row["surrogate_after"]) < float(row["surrogate_before"])


def test_navigation_learns_to_adapt(tmp_path):
    """Post-adaptation return rises clearly above its first value and above return_pre.

    A tanh policy, whose finite-difference Hessian-vector products equal the exact ones
    (tests/test_hvp.py) at half their cost. 15 iterations: in a 40-iteration run
    (105 s beside training at nice 19) return_post_1 went -334, -225, -125, -70, -45
    in the first five and stayed between -2.7 and -5.3 from iteration 15 on, with
    return_pre between -13 and -23; both checks hold from iteration 6.
    """
    config = load_config(
        TrainConfig,
        Path(__file__).parents[1] / "configs" / "navigation.yaml",
        ["iterations=15", "hidden_sizes=[64, 64]", "activation=tanh", "hvp=finite_difference"],
    )
    torch.set_num_threads(2)
    rows = read_metrics(train(config, tmp_path / "run", show_progress=False))
    post = np.array([float(r["return_post_1"]) for r in rows])
    pre = np.array([float(r["return_pre"]) for r in rows])
    first, last = post[:3].mean(), post[-5:].mean()
    print(f"return_post_1 first {first:.2f} last {last:.2f}; return_pre last {pre[-5:].mean():.2f}")
    assert last > first + 0.3 * abs(first), (first, last)
    assert post[-5:].mean() > pre[-5:].mean() + 0.05 * abs(pre[-5:].mean()), (pre[-5:], post[-5:])
