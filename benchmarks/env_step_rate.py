"""Steps/s of each metarl env against raw `mujoco.mj_step` on the same model, one core.

The raw rate advances the same model `frame_skip` physics steps per env step
(`mujoco.mj_step(model, data, nstep=frame_skip)`) with random controls and
nothing else; the env rate is `env.step` on the unwrapped env with random
actions (resetting on termination). Both are measured in this run, alternately,
and the ratio is reported. Usage:

    python benchmarks/env_step_rate.py [--seconds 2] [--out benchmarks/results/env_step_rate.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np

import metarl_envs


def env_rate(env_id: str, seconds: float) -> float:
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    env.set_task(env.sample_tasks(1)[0])
    rng = np.random.default_rng(0)
    low, high = env.action_space.low, env.action_space.high
    actions = rng.uniform(low, high, size=(4096, *env.action_space.shape)).astype(np.float32)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for action in actions[:512]:
            _, _, terminated, _, _ = env.step(action)
            if terminated:
                env.reset()
        steps += 512
    return steps / (time.perf_counter() - start)


def raw_rate(env_id: str, seconds: float) -> float:
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    model, data, frame_skip = env.model, env.data, env.frame_skip
    controls = np.random.default_rng(0).uniform(-1, 1, size=(512, model.nu))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for control in controls:
            data.ctrl[:] = control
            mujoco.mj_step(model, data, nstep=frame_skip)
        mujoco.mj_resetData(model, data)
        steps += len(controls)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="alternating env/raw rounds")
    parser.add_argument("--out", default="benchmarks/results/env_step_rate.json")
    args = parser.parse_args()

    rows = []
    for env_id in metarl_envs.ENV_IDS:
        env_rates, raw_rates = [], []
        for _ in range(args.repeats):
            env_rates.append(env_rate(env_id, args.seconds))
            if "Navigation" not in env_id:
                raw_rates.append(raw_rate(env_id, args.seconds))
        row = {"env": env_id, "env_steps_per_s": float(np.median(env_rates))}
        if raw_rates:
            row["raw_mj_step_env_steps_per_s"] = float(np.median(raw_rates))
            row["ratio_env_to_raw"] = row["env_steps_per_s"] / row["raw_mj_step_env_steps_per_s"]
        rows.append(row)

    result = {
        "benchmark": "env_step_rate",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "mujoco": mujoco.__version__,
        "seconds_per_measurement": args.seconds,
        "repeats": args.repeats,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    print(f"{'env':28s} {'env steps/s':>12s} {'raw steps/s':>12s} {'env/raw':>8s}")
    for row in rows:
        raw = row.get("raw_mj_step_env_steps_per_s")
        raw_text = f"{raw:12.0f}" if raw else f"{'-':>12s}"
        ratio = f"{row['ratio_env_to_raw']:8.2f}" if raw else f"{'-':>8s}"
        print(f"{row['env']:28s} {row['env_steps_per_s']:12.0f} {raw_text} {ratio}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
