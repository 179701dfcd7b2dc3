"""A sampler's vector env with one MjModel for all its copies against a model per copy.

A sampler steps hundreds of env copies in turn (`metarl_envs.vector.TaskVectorEnv`).
Their MjData must be separate; their MjModel, which MuJoCo only reads while stepping,
need not be. This builds two vector envs of the same copies, one whose copies share
the first copy's model (what metarl does) and one with a model per copy (what
separate `gymnasium.make` calls give), and steps them alternately, one vector step
each in turn, so that the machine's load affects both alike. The rates count the copies
actually stepped (an Ant copy whose episode ended waits for the next reset). Usage:

    python benchmarks/physics_locality.py [--copies 400] [--steps 200] [--rounds 3]

Writes benchmarks/results/physics_locality.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import mujoco
import numpy as np

from metarl_envs.locomotion import AntTaskEnv, HalfCheetahTaskEnv
from metarl_envs.vector import TaskVectorEnv

ENVS = {
    "metarl/HalfCheetahVel-v0": (HalfCheetahTaskEnv, "velocity"),
    "metarl/AntDir-v0": (AntTaskEnv, "direction"),
}


def vector_envs(env_id: str, copies: int, horizon: int) -> dict[str, TaskVectorEnv]:
    env_class, goal = ENVS[env_id]
    return {
        "one shared model": TaskVectorEnv(
            lambda **shared: env_class(goal=goal, **shared), copies, horizon
        ),
        "a model per copy": TaskVectorEnv(lambda **_: env_class(goal=goal), copies, horizon),
    }


def alternate(envs: dict[str, TaskVectorEnv], steps: int, seed: int) -> dict[str, float]:
    """Env steps/s of each vector env, stepped alternately for `steps` vector steps."""
    rng = np.random.default_rng(seed)
    first = next(iter(envs.values()))
    copies, shape = first.num_envs, first.single_action_space.shape
    tasks = first.envs[0].sample_tasks(copies)
    for env in envs.values():
        env.reset(seed=seed, options={"tasks": tasks})
    seconds = dict.fromkeys(envs, 0.0)
    stepped = dict.fromkeys(envs, 0)
    for step in range(steps):
        actions = rng.normal(0.0, 0.37, (copies, *shape))  # the Ant configs' initial sigma
        order = list(envs) if step % 2 == 0 else list(envs)[::-1]
        for name in order:
            env = envs[name]
            stepped[name] += int(env.tracker.running.sum())
            start = time.perf_counter()
            env.step(actions)
            seconds[name] += time.perf_counter() - start
    return {name: stepped[name] / seconds[name] for name in envs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=400)
    parser.add_argument("--steps", type=int, default=200, help="vector steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/physics_locality.json")
    args = parser.parse_args()
    rows = []
    for env_id in ENVS:
        envs = vector_envs(env_id, args.copies, args.steps)
        for round_index in range(args.rounds):
            rates = alternate(envs, args.steps, seed=round_index)
            shared, own = rates["one shared model"], rates["a model per copy"]
            rows.append({"env": env_id, "round": round_index, "copies": args.copies,
                         "shared_model_steps_per_s": shared, "model_per_copy_steps_per_s": own,
                         "ratio": shared / own})  # fmt: skip
        for env in envs.values():
            env.close()
    result = {
        "benchmark": "physics_locality",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "mujoco": mujoco.__version__,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'env':28s} {'round':>5s} {'shared model':>13s} {'model per copy':>15s} {'ratio':>6s}")
    for row in rows:
        print(f"{row['env']:28s} {row['round']:5d} {row['shared_model_steps_per_s']:13.0f} "
              f"{row['model_per_copy_steps_per_s']:15.0f} {row['ratio']:6.3f}")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
