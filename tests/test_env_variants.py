"""The variant ids: the Ant tasks without termination and the cheetah on the paper's clock,
each checked against the v0 env it varies."""

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import metarl_envs  # noqa: F401  (registers the ids)


@pytest.mark.parametrize("goal", ["Vel", "Dir"])
def test_ant_without_termination_is_v0_until_v0_ends_then_pays_survive_only_when_healthy(goal):
    """AntVelNoTermination-v0 / AntDirNoTermination-v0: the same episode as AntVel-v0 /
    AntDir-v0 (same seed and actions) up to v0's termination; then it goes on to the
    horizon, and its survive term is 1 exactly on steps whose torso height is in range."""
    v0, full = gym.make(f"metarl/Ant{goal}-v0"), gym.make(f"metarl/Ant{goal}NoTermination-v0")
    assert full.observation_space == v0.observation_space
    assert full.action_space == v0.action_space
    obs_v0, _ = v0.reset(seed=5)
    obs_full, _ = full.reset(seed=5)
    np.testing.assert_array_equal(obs_v0, obs_full)
    actions = np.random.default_rng(0).normal(0.0, 1.0, (200, 8))
    v0_ended_at, unhealthy_steps = None, 0
    for t, action in enumerate(actions):
        obs_full, reward, terminated, truncated, info = full.step(action)
        assert not terminated and truncated == (t == 199)
        height = full.unwrapped.data.qpos[2]
        assert info["reward_survive"] == (1.0 if 0.2 <= height <= 1.0 else 0.0)
        unhealthy_steps += info["reward_survive"] == 0.0
        terms = sum(v for k, v in info.items() if k.startswith("reward_"))
        assert reward == pytest.approx(terms, abs=1e-9)
        if v0_ended_at is None:
            obs_v0, reward_v0, terminated_v0, _, _ = v0.step(action)
            np.testing.assert_array_equal(obs_v0, obs_full)
            assert reward_v0 == reward
            if terminated_v0:
                v0_ended_at = t
    assert v0_ended_at is not None and v0_ended_at < 199  # sigma 1 hops out (README)
    assert unhealthy_steps > 0


@pytest.mark.parametrize("goal", ["Vel", "Dir"])
def test_paper_clock_cheetah_steps_the_physics_once_per_action(goal):
    """HalfCheetahVelPaperClock-v0 / HalfCheetahDirPaperClock-v0: the v0 cheetah with one
    MuJoCo step (0.01 s) per action, the paper's clock, where v0 takes five (0.05 s).
    Checked against mujoco.mj_step on a copy of the state: both ids reach exactly the
    state of their number of physics steps, and the x velocity is over their own dt."""
    envs = {
        1: gym.make(f"metarl/HalfCheetah{goal}PaperClock-v0"),
        5: gym.make(f"metarl/HalfCheetah{goal}-v0"),
    }
    assert envs[1].observation_space == envs[5].observation_space
    assert envs[1].action_space == envs[5].action_space
    assert envs[1].spec.max_episode_steps == envs[5].spec.max_episode_steps == 200
    observations = [env.reset(seed=4)[0] for env in envs.values()]
    np.testing.assert_array_equal(*observations)  # the same initial state
    actions = np.random.default_rng(2).uniform(-1.0, 1.0, (10, 6))
    for frames, env in envs.items():
        model, data = env.unwrapped.model, env.unwrapped.data
        assert env.unwrapped.dt == pytest.approx(0.01 * frames, abs=1e-12)
        reference = mujoco.MjData(model)
        for action in actions:
            reference.qpos[:], reference.qvel[:] = data.qpos, data.qvel
            reference.act[:], reference.time = data.act, data.time
            reference.qacc_warmstart[:] = data.qacc_warmstart
            reference.ctrl[:] = action
            x_before = float(data.qpos[0])
            mujoco.mj_step(model, reference, frames)
            _, _, _, _, info = env.step(action)
            np.testing.assert_array_equal(data.qpos, reference.qpos)
            np.testing.assert_array_equal(data.qvel, reference.qvel)
            velocity = (float(data.qpos[0]) - x_before) / (0.01 * frames)
            assert info["x_velocity"] == pytest.approx(velocity, abs=1e-9)
