"""Meta-World ML1 and ML10 behind metarl's task API (needs the `metaworld` extra).

Meta-World (v3 envs, Gymnasium API) defines its benchmarks as fixed task sets:
ML1 is one environment with 50 training and 50 test goal positions; ML10 is ten
training environments and five held-out test environments, 50 tasks each. A
metarl task is one of those tasks as a plain picklable dict

    {"env": "reach-v3", "split": "train", "index": 7, "data": <Meta-World's task bytes>}

(`data` is Meta-World's own pickled task, so a Ray worker sets a task without
rebuilding the benchmark). `sample_tasks(n)` draws training tasks,
`sample_tasks(n, split="test")` test tasks, spread evenly over the split's
environments. Meta-World's conventions are kept: the horizon is its
`max_path_length` (500), the reward is its version v2 (the Meta-World+ paper:
not comparable to v1), the goal is hidden from the observation (39 numbers),
and `info["success"]` says whether the task is solved at that step.

Importing this module does not import metaworld: the benchmark is built on
first use (cached per process: about 3 s for ML1, 20 s for ML10).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util

import gymnasium as gym
import numpy as np
from gymnasium import spaces

EXTRA_HINT = 'pip install -e ".[metaworld]"'
HORIZON = 500  # Meta-World's max_path_length of every v3 env
REWARD_VERSION = "v2"
BENCHMARK_SEED = 0  # the seed of Meta-World's task sets (its ML1/ML10 `seed` argument)
TASK_KEYS = ("env", "split", "index", "data")

# Meta-World 3.1.1's v3 environments (metaworld.env_dict.ALL_V3_ENVIRONMENTS), listed here
# so that registering their ids needs no import of metaworld (a test checks the two agree).
ML1_ENV_NAMES = (
    "assembly-v3", "basketball-v3", "bin-picking-v3", "box-close-v3",
    "button-press-topdown-v3", "button-press-topdown-wall-v3", "button-press-v3",
    "button-press-wall-v3", "coffee-button-v3", "coffee-pull-v3", "coffee-push-v3",
    "dial-turn-v3", "disassemble-v3", "door-close-v3", "door-lock-v3", "door-open-v3",
    "door-unlock-v3", "hand-insert-v3", "drawer-close-v3", "drawer-open-v3",
    "faucet-open-v3", "faucet-close-v3", "hammer-v3", "handle-press-side-v3",
    "handle-press-v3", "handle-pull-side-v3", "handle-pull-v3", "lever-pull-v3",
    "pick-place-wall-v3", "pick-out-of-hole-v3", "pick-place-v3", "plate-slide-v3",
    "plate-slide-side-v3", "plate-slide-back-v3", "plate-slide-back-side-v3",
    "peg-insert-side-v3", "peg-unplug-side-v3", "soccer-v3", "stick-push-v3",
    "stick-pull-v3", "push-v3", "push-wall-v3", "push-back-v3", "reach-v3",
    "reach-wall-v3", "shelf-place-v3", "sweep-into-v3", "sweep-v3", "window-open-v3",
    "window-close-v3",
)  # fmt: skip
BENCHMARKS = ("ML1", "ML10")


def missing_extra() -> str | None:
    """Why Meta-World envs cannot be made here (the extra's install command), or None."""
    if importlib.util.find_spec("metaworld") is None:
        return f"Meta-World is not installed: {EXTRA_HINT}"
    required = [
        r.split("==")[1].split(";")[0].strip()
        for r in importlib.metadata.requires("metaworld") or []
        if r.replace(" ", "").startswith("mujoco==")
    ]
    installed = importlib.metadata.version("mujoco")
    if required and installed != required[0]:
        return (
            f"Meta-World {importlib.metadata.version('metaworld')} needs mujoco=={required[0]} "
            f"(its models fail to load with {installed}): {EXTRA_HINT}"
        )
    return None


def _metaworld():
    problem = missing_extra()
    if problem:
        raise ImportError(problem)
    import metaworld

    return metaworld


@functools.lru_cache(maxsize=4)
def benchmark_tasks(benchmark: str, env_name: str | None) -> dict[str, list[dict]]:
    """Meta-World's task sets of `benchmark` as metarl tasks: {"train": [...], "test": [...]}."""
    metaworld = _metaworld()
    if benchmark == "ML1":
        built = metaworld.ML1(env_name, seed=BENCHMARK_SEED)
    else:
        built = metaworld.ML10(seed=BENCHMARK_SEED)
    return {
        split: [
            {"env": t.env_name, "split": split, "index": i, "data": t.data}
            for i, t in enumerate(tasks)
        ]
        for split, tasks in (("train", built.train_tasks), ("test", built.test_tasks))
    }


def benchmark_env_names(benchmark: str, env_name: str | None) -> set[str]:
    """The environments whose tasks a benchmark has (train and test)."""
    if benchmark == "ML1":
        return {env_name}
    from metaworld.env_dict import ML10_V3

    return set(ML10_V3["train"]) | set(ML10_V3["test"])


def make_metaworld_env(env_name: str, render_mode: str | None = None, size: int = 240):
    """A bare Meta-World v3 env (reward v2); it needs a task before it steps."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    _metaworld()
    return ALL_V3_ENVIRONMENTS[env_name](
        reward_function_version=REWARD_VERSION, render_mode=render_mode, width=size, height=size
    )


def metaworld_task(task: dict):
    """Meta-World's `Task` for a metarl task dict."""
    from metaworld.types import Task

    return Task(env_name=task["env"], data=task["data"])


def spread_evenly(tasks: list[dict], rng: np.random.Generator, n: int) -> list[dict]:
    """n tasks, the environments taking turns in a random order; within one, without
    replacement while it has tasks left (Meta-World's meta-batches are balanced too)."""
    names = sorted({t["env"] for t in tasks})
    by_env = {name: [t for t in tasks if t["env"] == name] for name in names}
    order = [names[i] for i in rng.permutation(len(names))]
    counts = {name: 0 for name in names}
    for k in range(n):
        counts[order[k % len(order)]] += 1
    chosen: dict[str, list[dict]] = {}
    for name in names:
        pool = by_env[name]
        picks = rng.choice(len(pool), counts[name], replace=counts[name] > len(pool))
        chosen[name] = [pool[int(i)] for i in picks]
    return [chosen[order[k % len(order)]][k // len(order)] for k in range(n)]


class MetaWorldTaskEnv(gym.Env):
    """One Meta-World benchmark (ML1 of `env_name`, or ML10) as a metarl task env.

    Holds one Meta-World env per environment name it has been given a task of.
    Before `set_task` the task is the first training task.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(
        self,
        benchmark: str,
        env_name: str | None = None,
        oracle: bool = False,
        render_mode: str | None = None,
        width: int = 240,
        height: int = 240,
    ):
        if oracle:
            raise ValueError(
                "Meta-World envs have no oracle variant (the ML benchmarks hide the goal); "
                "compare with the pretrained, random or context baselines"
            )
        if width != height:
            raise ValueError(f"Meta-World renders square images, got {width}x{height}")
        assert benchmark in BENCHMARKS, benchmark
        self.benchmark, self.env_name = benchmark, env_name
        self.render_mode, self.size = render_mode, width
        self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(39,), dtype=np.float64)
        self._envs: dict = {}
        self._current = None
        self.set_task(self.tasks("train")[0])

    def tasks(self, split: str) -> list[dict]:
        """All of Meta-World's tasks of `split` ("train" or "test") for this benchmark."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return benchmark_tasks(self.benchmark, self.env_name)[split]

    def sample_tasks(self, n: int, split: str = "train") -> list[dict]:
        """`n` tasks of `split` drawn from the env's generator (seeded by `reset(seed=...)`)."""
        if not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"number of tasks must be a non-negative integer, got {n!r}")
        return spread_evenly(self.tasks(split), self.np_random, int(n))

    def set_task(self, task: dict) -> None:
        """Make `task` the current task; raises ValueError naming a bad key."""
        check_task(task, self.env_names())
        env = self._envs.get(task["env"])
        if env is None:
            env = make_metaworld_env(task["env"], self.render_mode, self.size)
            self._envs[task["env"]] = env
        env.set_task(metaworld_task(task))
        self._current, self._task = env, dict(task)

    def get_task(self) -> dict:
        return dict(self._task)

    def env_names(self) -> set[str]:
        return benchmark_env_names(self.benchmark, self.env_name)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)  # seeds sample_tasks; Meta-World's reset is set by the task
        observation, info = self._current.reset()
        return observation, info

    def step(self, action):
        return self._current.step(np.asarray(action, dtype=np.float32))

    def render(self):
        return None if self.render_mode is None else self._current.render()

    def close(self):
        for env in self._envs.values():
            env.close()
        self._envs.clear()


def check_task(task: object, env_names: set[str]) -> None:
    """ValueError naming what is wrong with a task dict of this benchmark."""
    if not isinstance(task, dict) or sorted(task) != sorted(TASK_KEYS):
        got = sorted(task) if isinstance(task, dict) else type(task).__name__
        raise ValueError(f"a Meta-World task is a dict with keys {list(TASK_KEYS)}, got {got}")
    if task["env"] not in env_names:
        raise ValueError(f"task env {task['env']!r} is not one of {sorted(env_names)}")
    if not isinstance(task["data"], bytes):
        raise ValueError("task key 'data' must be Meta-World's task bytes")


def check_horizon(max_episode_steps: int | None) -> None:
    if max_episode_steps is not None and max_episode_steps > HORIZON:
        raise ValueError(
            f"horizon {max_episode_steps} exceeds Meta-World's max_path_length {HORIZON}"
        )
