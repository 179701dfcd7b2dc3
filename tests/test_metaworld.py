"""Meta-World ML1/ML10 through metarl's task API; success rates in rollouts, metrics and eval.

Tests that make Meta-World envs need the `metaworld` extra (CI installs it); the
others (registration, the missing-extra message, success bookkeeping) always run.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space
from helpers import small_navigation_config

import metarl_envs
from metarl.cli import main
from metarl.config import TrainConfig
from metarl.config_validation import ConfigError, config_from_dict
from metarl.evaluation import EvaluationSettings, run_evaluation
from metarl.evaluation_results import write_results
from metarl.experiment import build_policy, held_out_tasks, iteration_tasks
from metarl.sampling.rollouts import AdvantageSettings, RolloutKey, rollout
from metarl.trainer import resume, train
from metarl_envs.meta_world import missing_extra, spread_evenly

needs_metaworld = pytest.mark.skipif(
    missing_extra() is not None, reason=f"Meta-World extra: {missing_extra()}"
)
REACH = "metarl/ML1-reach-v3"


def small_reach_config(**changes):
    values = dict(env=REACH, seed=1, iterations=2, meta_batch_size=2, rollouts_per_task=2)
    values.update(horizon=30, hidden_sizes=[16, 16], activation="tanh", torch_threads=1)
    values.update(num_envs=4, checkpoint_every=1)
    return config_from_dict(TrainConfig, {**values, **changes})


# ---- without the extra -----------------------------------------------------------------


def test_registering_the_ids_does_not_import_metaworld():
    code = "import sys, metarl.config, metarl_envs; print('metaworld' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
    assert REACH in metarl_envs.ALL_ENV_IDS and "metarl/ML10-v3" in metarl_envs.ALL_ENV_IDS


def test_a_metaworld_config_without_the_extra_stops_naming_it(monkeypatch, tmp_path, capsys):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "metaworld" else real_find_spec(name, *a),
    )
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[metaworld\]"'):
        config_from_dict(TrainConfig, {"env": REACH})
    run_dir = tmp_path / "run"
    assert main(["train", "configs/metaworld_ml1_reach.yaml", "--run-dir", str(run_dir)]) == 2
    error = capsys.readouterr().err
    assert error.count("metarl: error:") == 1 and 'pip install -e ".[metaworld]"' in error
    assert not run_dir.exists()


def test_tasks_are_spread_evenly_over_environments():
    tasks = [{"env": name, "index": i} for name in ("a", "b", "c") for i in range(4)]
    rng = np.random.default_rng(0)
    chosen = spread_evenly(tasks, rng, 7)
    counts = {name: sum(t["env"] == name for t in chosen) for name in "abc"}
    assert sorted(counts.values()) == [2, 2, 3]
    for name in "abc":  # without replacement while the environment has tasks left
        indices = [t["index"] for t in chosen if t["env"] == name]
        assert len(set(indices)) == len(indices)
    assert spread_evenly(tasks, np.random.default_rng(0), 7) == chosen


class SuccessVectorEnv(VectorEnv):
    """Two copies of a 1-D env whose info["success"] follows a script; copy 1 ends at step 2."""

    def __init__(self, num_envs=2):
        self.num_envs = num_envs
        self.single_observation_space = gym.spaces.Box(-1, 1, (1,))
        self.single_action_space = gym.spaces.Box(-1, 1, (1,))
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        # success per step (rows: steps, columns: copies); copy 1's step-3 success comes
        # after its episode ended and must not count
        self.script = np.array([[0, 0], [1, 0], [0, 0], [0, 1]], dtype=float)

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros((self.num_envs, 1), np.float32), {}

    def step(self, actions):
        success = self.script[self.t]
        self.t += 1
        terminated = np.array([False, self.t >= 2])
        zeros = np.zeros((self.num_envs, 1), np.float32)
        return zeros, np.ones(self.num_envs), terminated, np.zeros(2, bool), {"success": success}


def test_an_episode_succeeds_if_any_of_its_steps_succeeded():
    policy = build_policy(small_navigation_config())
    policy = type(policy)(1, 1, [4], "tanh", 0.0, 0)
    params = {n: p.detach() for n, p in policy.named_parameters()}
    batch = rollout(
        SuccessVectorEnv(),
        policy,
        params,
        [{}],
        np.array([0]),
        rollouts_per_task=2,
        horizon=4,
        key=RolloutKey(0, 0, 0, 0),
        advantage=AdvantageSettings(0.99, 1.0, False),
    )
    assert batch.successes.tolist() == [[1.0, 0.0]]
    assert batch.mean_success() == 0.5
    assert batch.mask.sum(-1).tolist() == [[4.0, 2.0]]
    assert batch.select([0]).successes.tolist() == [[1.0, 0.0]]


# ---- with the extra ------------------------------------------------------------------


@needs_metaworld
def test_ids_cover_metaworlds_v3_environments():
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    assert set(metarl_envs.meta_world.ML1_ENV_NAMES) == set(ALL_V3_ENVIRONMENTS)


@needs_metaworld
def test_ml1_tasks_are_metaworlds_train_and_test_sets():
    import metaworld

    env = gym.make(REACH).unwrapped
    reference = metaworld.ML1("reach-v3", seed=0)
    assert [t["data"] for t in env.tasks("train")] == [t.data for t in reference.train_tasks]
    assert [t["data"] for t in env.tasks("test")] == [t.data for t in reference.test_tasks]
    assert len(env.tasks("train")) == 50
    env.reset(seed=5)
    first = env.sample_tasks(4, split="test")
    env.reset(seed=5)
    assert env.sample_tasks(4, split="test") == first
    assert all(t["split"] == "test" for t in first)
    config = small_reach_config()
    assert all(t["split"] == "train" for t in iteration_tasks(config, 0))
    assert all(t["split"] == "test" for t in held_out_tasks(REACH, 3, seed=0))
    with pytest.raises(ValueError, match="keys"):
        env.set_task({"goal": [0, 0]})
    env.set_task(first[0])
    check_env(env, skip_render_check=True)


@needs_metaworld
def test_horizon_and_reward_are_metaworlds_v2():
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    env = gym.make(REACH)
    assert env.spec.max_episode_steps == 500
    task = env.unwrapped.tasks("train")[3]
    env.unwrapped.set_task(task)
    env.reset(seed=0)
    direct = {v: ALL_V3_ENVIRONMENTS["reach-v3"](reward_function_version=v) for v in ("v1", "v2")}
    for reference in direct.values():
        reference.set_task(metarl_envs.meta_world.metaworld_task(task))
        reference.reset()
    actions = np.random.default_rng(0).uniform(-1, 1, (500, 4)).astype(np.float32)
    rewards = {"ours": [], "v1": [], "v2": []}
    for t, action in enumerate(actions):
        _, reward, terminated, truncated, info = env.step(action)
        rewards["ours"].append(reward)
        for version, reference in direct.items():
            rewards[version].append(reference.step(action)[1])
        assert not terminated and truncated == (t == 499) and "success" in info
    assert rewards["ours"] == rewards["v2"] and rewards["ours"] != rewards["v1"]
    with pytest.raises(ValueError, match="max_path_length 500"):
        gym.make_vec(REACH, 2, vectorization_mode="vector_entry_point", max_episode_steps=501)


@needs_metaworld
def test_vector_env_steps_each_copy_as_its_own_env():
    env = gym.make(REACH).unwrapped
    tasks = env.tasks("train")[:3]
    vector = gym.make_vec(REACH, 4, vectorization_mode="vector_entry_point", max_episode_steps=20)
    observations, _ = vector.reset(seed=[0, 1, 2], options={"tasks": tasks})
    actions = np.random.default_rng(1).uniform(-1, 1, (20, 4, 4)).astype(np.float32)
    for i, task in enumerate(tasks):
        env.set_task(task)
        assert np.array_equal(env.reset()[0], observations[i])
    vector.reset(seed=[0, 1, 2], options={"tasks": tasks})
    single = []
    for i, task in enumerate(tasks):
        env.set_task(task)
        env.reset()
        single.append([env.step(actions[t, i])[1] for t in range(20)])
    stepped = [vector.step(actions[t])[1] for t in range(20)]
    assert np.array_equal(np.array(stepped)[:, :3].T, np.array(single))
    assert np.all(np.array(stepped)[:, 3] == 0)  # the idle copy is not stepped
    vector.close()


@needs_metaworld
def test_ml1_trains_resumes_and_logs_success(tmp_path):
    config = small_reach_config()
    straight = train(config, tmp_path / "straight", show_progress=False)
    stopped = train(small_reach_config(iterations=1), tmp_path / "resumed", show_progress=False)
    resume(stopped, {"iterations": 2}, show_progress=False)
    rows = [list(csv.DictReader(open(d / "metrics.csv"))) for d in (straight, stopped)]
    for key in ("return_pre", "success_pre", "return_post_1", "success_post_1", "kl"):
        assert [r[key] for r in rows[0]] == [r[key] for r in rows[1]], key
    assert all(0.0 <= float(r["success_post_1"]) <= 1.0 for r in rows[0])


@needs_metaworld
def test_eval_reports_success_rates(tmp_path):
    config = small_reach_config()
    policy = build_policy(config)
    settings = EvaluationSettings(tasks=2, steps=1, rollouts=2, seed=0)
    curves = run_evaluation({"maml": (policy, config, "new")}, settings, REACH, log=lambda m: 0)
    success = np.array(curves[0].per_task_success)
    assert success.shape == (2, 2) and np.all((success >= 0) & (success <= 1))
    assert np.all(success * 2 == np.round(success * 2))  # fractions of 2 episodes
    json_path, csv_path = write_results(curves, settings, REACH, tmp_path)
    assert "task_parameters" not in json.loads(json_path.read_text())  # serialized, not recorded
    rows = list(csv.DictReader(open(csv_path)))
    assert [float(r["success_rate"]) for r in rows] == pytest.approx(success.mean(0).tolist())


@needs_metaworld
@pytest.mark.slow  # building ML10's task sets takes about 20 s
def test_ml10_trains_on_ten_environments_and_holds_out_five():
    from metaworld.env_dict import ML10_V3

    config = config_from_dict(
        {"env": "metarl/ML10-v3", "meta_batch_size": 20, "rollouts_per_task": 1, "horizon": 5}
    )
    tasks = iteration_tasks(config, 0)
    assert sorted(t["env"] for t in tasks) == sorted(list(ML10_V3["train"]) * 2)
    held_out = held_out_tasks("metarl/ML10-v3", 10, seed=0)
    assert sorted(t["env"] for t in held_out) == sorted(list(ML10_V3["test"]) * 2)
    vector = gym.make_vec(
        "metarl/ML10-v3", 20, vectorization_mode="vector_entry_point", max_episode_steps=5
    )
    observations, _ = vector.reset(seed=list(range(20)), options={"tasks": tasks})
    assert observations.shape == (20, 39)
    vector.reset(seed=list(range(10)), options={"tasks": held_out})  # other classes
    sizes = vector.pool_sizes
    assert sum(sizes.values()) == 20  # 10 envs of classes the reset did not use were closed
    assert all(sizes[name] == 2 for name in ML10_V3["test"])
    vector.close()
