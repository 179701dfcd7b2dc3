"""Bad input to the task-distribution environments: a clear error naming what is wrong,
and nothing changed."""

import math
import re

import gymnasium as gym
import numpy as np
import pytest

import metarl_envs

LOCOMOTION_IDS = [i for i in metarl_envs.ENV_IDS if "Navigation" not in i]


@pytest.mark.parametrize(
    "env_id, task, key",
    [
        ("metarl/HalfCheetahVel-v0", {}, "velocity"),
        ("metarl/HalfCheetahVel-v0", {"velocity": 1.0, "speed": 2}, "speed"),
        ("metarl/HalfCheetahVel-v0", {"velocity": math.nan}, "velocity"),
        ("metarl/AntVel-v0", {"velocity": math.inf}, "velocity"),
        ("metarl/AntVel-v0", {"velocity": "fast"}, "velocity"),
        ("metarl/HalfCheetahDir-v0", {"direction": 0}, "direction"),
        ("metarl/AntDir-v0", {"direction": 2}, "direction"),
        ("metarl/AntDir-v0", {"goal": [0, 0]}, "direction"),
        ("metarl/Navigation2D-v0", {"goal": [0.1]}, "goal"),
        ("metarl/Navigation2D-v0", {"goal": [0.1, math.nan]}, "goal"),
        ("metarl/Navigation2D-v0", {"velocity": 1.0}, "goal"),
    ],
)
def test_set_task_rejects_bad_input_naming_the_key(env_id, task, key):
    env = gym.make(env_id).unwrapped
    before = env.get_task()
    with pytest.raises(ValueError, match=key):
        env.set_task(task)
    assert env.get_task() == before


@pytest.mark.parametrize("env_id", LOCOMOTION_IDS)
def test_an_action_of_the_wrong_shape_is_a_clear_error_and_changes_nothing(env_id):
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    before = env.data.qpos.copy()
    size = env.action_space.shape[0]
    for bad in (np.zeros((1, size)), np.zeros(size + 1)):
        message = f"action of shape {(size,)}, got {bad.shape}"
        with pytest.raises(ValueError, match=re.escape(message)):
            env.step(bad)
    with pytest.raises(ValueError, match=rf"shape \(2, {size}\)"):
        env.step_batch([env, env], np.zeros((2, size + 1)))
    assert np.array_equal(env.data.qpos, before)


def test_unknown_goal_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="goal must be one of"):
        metarl_envs.locomotion.HalfCheetahTaskEnv(goal="height")
