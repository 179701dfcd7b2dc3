"""The five task-distribution environments: checker, rewards by hand, seeding.

Bad input (set_task, action shape): test_env_bad_input.py; the NoTermination and
PaperClock ids against v0: test_env_variants.py.
"""

import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import metarl_envs
from metarl_envs.locomotion import ANT_TASKS, CHEETAH_TASKS

LOCOMOTION_IDS = [i for i in metarl_envs.ENV_IDS if "Navigation" not in i]
PAPER_CLOCK_IDS = list(metarl_envs.PAPER_CLOCK_ENV_IDS)
HORIZONS = {
    "metarl/Navigation2D-v0": 100,
    "metarl/HalfCheetahVel-v0": 200,
    "metarl/HalfCheetahDir-v0": 200,
    "metarl/AntVel-v0": 200,
    "metarl/AntDir-v0": 200,
}
CTRL_WEIGHTS = {"HalfCheetah": 0.05, "Ant": 0.005}


def make(env_id, **kwargs):
    return gym.make(env_id, **kwargs)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("oracle", [False, True])
@pytest.mark.parametrize("env_id", [*metarl_envs.ENV_IDS, *PAPER_CLOCK_IDS])
def test_check_env_passes(env_id, oracle):
    env = make(env_id, oracle=oracle)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.spec.max_episode_steps == HORIZONS[env_id.replace("PaperClock", "")]


def test_registered_ids_are_the_five_of_the_design():
    assert set(metarl_envs.ENV_IDS) == set(HORIZONS)
    for env_id in HORIZONS:
        assert env_id in gym.registry


@pytest.mark.parametrize("env_id", metarl_envs.ENV_IDS)
def test_sample_tasks_has_exact_keys_and_ranges(env_id):
    env = make(env_id).unwrapped
    env.reset(seed=3)
    tasks = env.sample_tasks(200)
    assert len(tasks) == 200
    pickle.loads(pickle.dumps(tasks))
    if env_id.endswith("Vel-v0"):
        high = 2.0 if "Cheetah" in env_id else 3.0
        values = np.array([t["velocity"] for t in tasks])
        assert all(set(t) == {"velocity"} for t in tasks)
        assert values.min() >= 0.0 and values.max() <= high and values.max() > 0.8 * high
    elif env_id.endswith("Dir-v0"):
        assert all(set(t) == {"direction"} for t in tasks)
        assert {t["direction"] for t in tasks} == {-1, 1}
    else:
        goals = np.array([t["goal"] for t in tasks])
        assert all(set(t) == {"goal"} for t in tasks)
        assert goals.shape == (200, 2) and np.abs(goals).max() <= 0.5


@pytest.mark.parametrize("env_id", metarl_envs.ENV_IDS)
def test_same_seed_same_tasks_and_trajectory(env_id):
    def run(seed):
        env = make(env_id)
        env.reset(seed=seed)
        tasks = env.unwrapped.sample_tasks(5)
        env.unwrapped.set_task(tasks[2])
        obs, _ = env.reset(seed=seed)
        actions = np.random.default_rng(0).uniform(-1, 1, size=(30, *env.action_space.shape))
        trajectory = [obs]
        for action in actions:
            obs, reward, terminated, truncated, _ = env.step(action)
            trajectory.append(np.append(obs, reward))
            if terminated or truncated:
                break
        return tasks, np.concatenate(trajectory)

    tasks_a, traj_a = run(11)
    tasks_b, traj_b = run(11)
    tasks_c, _ = run(12)
    assert tasks_a == tasks_b
    np.testing.assert_array_equal(traj_a, traj_b)
    assert tasks_a != tasks_c


@pytest.mark.parametrize("env_id", [*LOCOMOTION_IDS, *PAPER_CLOCK_IDS])
def test_locomotion_reward_is_sum_of_terms_and_matches_hand_computation(env_id):
    env = make(env_id).unwrapped
    env.reset(seed=0)
    task = env.sample_tasks(1)[0]
    env.set_task(task)
    weight = CTRL_WEIGHTS["Ant" if "Ant" in env_id else "HalfCheetah"]
    rng = np.random.default_rng(1)
    for _ in range(25):
        action = rng.normal(0.0, 1.0, size=env.action_space.shape)  # partly outside [-1, 1]
        x_before = float(env.data.qpos[0])
        _, reward, terminated, _, info = env.step(action)
        x_after = float(env.data.qpos[0])
        velocity = (x_after - x_before) / env.dt
        if "velocity" in task:
            expected_forward = -abs(velocity - task["velocity"])
        else:
            expected_forward = task["direction"] * velocity
        clipped = np.clip(action, -1.0, 1.0)
        terms = {k: v for k, v in info.items() if k.startswith("reward_")}
        assert reward == pytest.approx(sum(terms.values()), abs=1e-12)
        assert info["x_velocity"] == pytest.approx(velocity, abs=1e-12)
        assert terms["reward_forward"] == pytest.approx(expected_forward, abs=1e-12)
        assert terms["reward_ctrl"] == pytest.approx(-weight * np.sum(clipped**2), abs=1e-12)
        if "Ant" in env_id:
            assert set(terms) == {
                "reward_forward",
                "reward_ctrl",
                "reward_contact",
                "reward_survive",
            }
            forces = np.clip(env.data.cfrc_ext, -1.0, 1.0)
            assert terms["reward_contact"] == pytest.approx(-5e-4 * np.sum(forces**2), abs=1e-12)
            assert terms["reward_survive"] == (0.0 if terminated else 1.0)
        else:
            assert set(terms) == {"reward_forward", "reward_ctrl"}
        if terminated:
            break


@pytest.mark.parametrize("env_id", metarl_envs.ENV_IDS)
def test_set_task_changes_reward_for_same_state_and_action(env_id):
    env = make(env_id).unwrapped
    env.reset(seed=0)
    tasks = {
        "velocity": [{"velocity": 0.2}, {"velocity": 1.7}],
        "direction": [{"direction": 1}, {"direction": -1}],
        "goal": [{"goal": [0.3, -0.2]}, {"goal": [-0.4, 0.1]}],
    }[env.task_family.key]
    action = np.full(env.action_space.shape, 0.5, dtype=np.float32) * env.action_space.high
    rewards = []
    for task in tasks:
        env.set_task(task)
        env.reset(seed=5)
        rewards.append(env.step(action)[1])
    assert rewards[0] != pytest.approx(rewards[1])


def test_navigation_reward_clipping_and_termination_by_hand():
    env = make("metarl/Navigation2D-v0").unwrapped
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [0.0, 0.0])
    env.set_task({"goal": [0.3, -0.4]})
    obs, reward, terminated, _, info = env.step(np.array([1.0, -0.05]))
    np.testing.assert_allclose(obs, [0.1, -0.05])  # 1.0 is clipped to 0.1
    assert reward == pytest.approx(-((0.1 - 0.3) ** 2 + (-0.05 + 0.4) ** 2), abs=1e-12)
    assert reward == info["reward_distance"] and not terminated

    env.reset(seed=0)
    env.set_task({"goal": [0.1, 0.0095]})  # distance 0.0095 after a full step
    _, _, terminated, _, _ = env.step(np.array([0.5, 0.0]))
    assert terminated
    env.reset(seed=0)
    env.set_task({"goal": [0.1, 0.0105]})  # distance 0.0105: not yet there
    _, _, terminated, _, _ = env.step(np.array([0.5, 0.0]))
    assert not terminated


def test_navigation_step_batches_points_like_the_env():
    rng = np.random.default_rng(0)
    positions = rng.uniform(-1, 1, size=(64, 2))
    goals = rng.uniform(-0.5, 0.5, size=(64, 2))
    actions = rng.normal(0, 0.2, size=(64, 2))
    new, rewards, terminated, _ = metarl_envs.navigation.navigation_step(positions, goals, actions)
    for i in range(64):
        expected = positions[i] + np.clip(actions[i], -0.1, 0.1)
        np.testing.assert_allclose(new[i], expected)
        assert rewards[i] == pytest.approx(-np.sum((expected - goals[i]) ** 2))
        assert terminated[i] == (np.linalg.norm(expected - goals[i]) < 0.01)


@pytest.mark.parametrize("env_id", metarl_envs.ENV_IDS)
def test_episodes_stop_at_the_horizon(env_id):
    env = make(env_id)
    env.reset(seed=0)
    env.unwrapped.set_task(env.unwrapped.task_family.default_task())
    steps, done = 0, False
    action = np.zeros(env.action_space.shape, dtype=np.float32)  # the ant stays healthy at rest
    while not done:
        _, _, terminated, truncated, _ = env.step(action)
        steps += 1
        done = terminated or truncated
    assert steps == HORIZONS[env_id] and truncated and not terminated


def test_ant_terminates_when_unhealthy_without_survive_bonus():
    env = make("metarl/AntDir-v0").unwrapped
    env.reset(seed=0)
    qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
    qpos[2] = 1.5  # torso above the healthy range (0.2, 1.0)
    env.set_state(qpos, qvel)
    _, _, terminated, _, info = env.step(np.zeros(8))
    assert terminated and info["reward_survive"] == 0.0


@pytest.mark.parametrize("env_id", metarl_envs.ENV_IDS)
def test_oracle_observation_appends_task_parameters(env_id):
    env = make(env_id, oracle=True).unwrapped
    plain = make(env_id).unwrapped
    env.reset(seed=0)
    task = env.sample_tasks(1)[0]
    env.set_task(task)
    plain.set_task(task)
    obs, _ = env.reset(seed=4)
    plain_obs, _ = plain.reset(seed=4)
    expected = np.asarray(next(iter(task.values())), dtype=np.float64).reshape(-1)
    assert obs.shape[0] == plain_obs.shape[0] + expected.size
    np.testing.assert_array_equal(obs[: plain_obs.shape[0]], plain_obs)
    np.testing.assert_array_equal(obs[plain_obs.shape[0] :], expected)
    assert env.observation_space.contains(obs)


@pytest.mark.parametrize("env_id", metarl_envs.ENV_IDS)
def test_stepping_before_set_task_uses_documented_default(env_id):
    env = make(env_id).unwrapped
    documented = {
        "metarl/Navigation2D-v0": {"goal": [0.5, 0.5]},
        "metarl/HalfCheetahVel-v0": {"velocity": CHEETAH_TASKS["velocity"].default},
        "metarl/HalfCheetahDir-v0": {"direction": 1},
        "metarl/AntVel-v0": {"velocity": ANT_TASKS["velocity"].default},
        "metarl/AntDir-v0": {"direction": 1},
    }[env_id]
    assert env.get_task() == documented
    env.reset(seed=0)
    _, reward, _, _, _ = env.step(env.action_space.sample())
    assert np.isfinite(reward)


def test_cheetah_model_equals_gymnasiums_and_logs_nothing(tmp_path, monkeypatch):
    import mujoco

    quiet, plain = tmp_path / "quiet", tmp_path / "plain"
    quiet.mkdir()
    plain.mkdir()
    monkeypatch.chdir(quiet)
    env = make("metarl/HalfCheetahVel-v0").unwrapped
    ours = env.model
    assert not (quiet / "MUJOCO_LOG.TXT").exists()
    monkeypatch.chdir(plain)  # Gymnasium's plain loader, for reference (it may log here)
    reference = mujoco.MjModel.from_xml_path(env.fullpath)
    compared = 0
    for name in dir(reference):
        value = getattr(reference, name)
        if not name.startswith("_") and isinstance(value, np.ndarray):
            np.testing.assert_array_equal(getattr(ours, name), value, err_msg=name)
            compared += 1
    assert compared > 50
    assert ours.stat.meaninertia == reference.stat.meaninertia
    assert ours.body_subtreemass[0] == pytest.approx(14.0)
