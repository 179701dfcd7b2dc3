"""The locomotion vector env: its copies share one MjModel, and stepping them as a batch,
in one thread or over several, gives bitwise the numbers of separate envs, each with its
own model."""

import json
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from helpers import small_navigation_config

import metarl_envs  # noqa: F401  (registers the envs)
from metarl.cli import main
from metarl.sampling.rollouts import make_vector_env
from metarl.trainer import train
from metarl_envs.physics_threads import PhysicsThreads

ROOT = Path(__file__).parents[1]
LOCOMOTION = ["metarl/HalfCheetahVel-v0", "metarl/HalfCheetahDir-v0", "metarl/AntVel-v0"]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("env_id", LOCOMOTION)
def test_vector_copies_share_one_model_and_step_like_separate_envs(env_id, threads):
    # 3 threads: parts of 1, 2 and 2 copies; Ant long enough for episodes to end (random
    # actions end them after about 100 steps)
    count, steps = 5, 150 if "Ant" in env_id else 40
    vector = make_vector_env(env_id, count, horizon=steps, physics_threads=threads)
    copies = vector.unwrapped.envs
    assert vector.unwrapped.threads.count == threads
    assert all(env.model is copies[0].model for env in copies)
    assert len({id(env.data) for env in copies}) == count
    separate = [gymnasium.make(env_id).unwrapped for _ in range(count)]
    assert all(env.model is not separate[0].model for env in separate[1:])

    separate[0].reset(seed=3)
    tasks = separate[0].sample_tasks(count)
    seeds = [11 + i for i in range(count)]
    observations, _ = vector.reset(seed=seeds, options={"tasks": tasks})
    for env, task in zip(separate, tasks):
        env.set_task(task)
    expected = np.stack([env.reset(seed=s)[0] for env, s in zip(separate, seeds)])
    np.testing.assert_array_equal(observations, expected)

    rng = np.random.default_rng(0)
    running = np.ones(count, dtype=bool)
    for _ in range(steps):
        actions = rng.uniform(-1.2, 1.2, (count, *separate[0].action_space.shape))
        observations, rewards, terminated, _, info = vector.step(actions)
        for i in np.flatnonzero(running):
            obs, reward, done, _, terms = separate[i].step(actions[i])
            np.testing.assert_array_equal(observations[i], obs)
            assert rewards[i] == reward
            assert info["reward_forward"][i] == terms["reward_forward"]
            assert terminated[i] == done
            running[i] = not done
    if env_id.startswith("metarl/Ant"):
        assert not running.all()  # the comparison covered terminations
    vector.close()


def test_physics_threads_are_refused_where_there_is_no_threaded_physics():
    with pytest.raises(ValueError, match="Navigation2D-v0 steps its copies in one thread"):
        make_vector_env("metarl/Navigation2D-v0", 2, horizon=10, physics_threads=2)
    with pytest.raises(ValueError, match="physics_threads must be an integer >= 1, got 0"):
        make_vector_env("metarl/AntDir-v0", 2, horizon=10, physics_threads=0)


def test_an_error_in_a_physics_thread_is_raised_in_the_caller():
    threads = PhysicsThreads(2)

    def step_range(start, stop):
        if start > 0:
            raise RuntimeError(f"part {start}..{stop} failed")

    with pytest.raises(RuntimeError, match="part 2..4 failed"):
        threads.run(step_range, 4)
    threads.close()


def test_eval_with_physics_threads_gives_the_same_numbers(tmp_path, capsys):
    """`metarl eval --physics-threads 2` of a committed cheetah policy: bitwise the same
    per-task returns as the run's one thread; an env without threaded physics is refused."""
    best = str(ROOT / "benchmarks" / "runs" / "halfcheetah_vel" / "best.pt")
    small = ["--tasks", "2", "--steps", "1", "--rollouts", "2", "--no-progress"]
    results = []
    for threads in ([], ["--physics-threads", "2"]):
        out = tmp_path / f"threads{len(threads)}"
        assert main(["eval", best, *small, *threads, "--out", str(out)]) == 0
        results.append(json.loads((out / "eval.json").read_text())["methods"]["maml"])
    assert results[0]["per_task"] == results[1]["per_task"]
    navigation = train(small_navigation_config(iterations=1), tmp_path / "nav", show_progress=False)
    capsys.readouterr()
    assert main(["eval", str(navigation), *small, "--physics-threads", "2"]) == 2
    assert "--physics-threads 2: key 'physics_threads': metarl/Navigation2D-v0 steps" in (
        capsys.readouterr().err
    )
