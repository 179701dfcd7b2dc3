"""Sampling time of the cheetah on the paper's clock against Gymnasium's, one core.

Steps 400 copies of `metarl/HalfCheetahVel-v0` (5 physics steps per action) and of
`metarl/HalfCheetahVelPaperClock-v0` (1 physics step) through one 200-step episode,
as a sampler's vector env does, with actions from a 100x100 ReLU policy plus unit
noise (one forward pass per step for all copies). The two are measured alternately in
this run, `--repeats` times each; the table gives the median seconds per episode batch
(env and policy apart) and the ratio PaperClock / v0. Usage:

    python benchmarks/paper_clock_speed.py [--repeats 3] [--out FILE]

(default FILE: benchmarks/results/paper_clock_speed.json).

Run it on a quiet machine (stop background training first).
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
import torch

from metarl.sampling.rollouts import make_vector_env

ENVS = ("metarl/HalfCheetahVel-v0", "metarl/HalfCheetahVelPaperClock-v0")
COPIES, HORIZON = 400, 200


def episode_batch_seconds(env_id: str, policy: torch.nn.Module, seed: int) -> tuple[float, float]:
    """(seconds in env.step, seconds in the policy) for one episode of every copy."""
    env = make_vector_env(env_id, COPIES, HORIZON)
    tasks = [{"velocity": 1.0}] * COPIES
    observations, _ = env.reset(seed=list(range(COPIES)), options={"tasks": tasks})
    rng = np.random.default_rng(seed)
    env_s = policy_s = 0.0
    for _ in range(HORIZON):
        start = time.perf_counter()
        with torch.no_grad():
            mean = policy(torch.as_tensor(observations, dtype=torch.float32)).numpy()
        actions = mean + rng.standard_normal(mean.shape)
        middle = time.perf_counter()
        observations, _, _, _, _ = env.step(actions)
        env_s += time.perf_counter() - middle
        policy_s += middle - start
    env.close()
    return env_s, policy_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds")
    parser.add_argument("--out", default="benchmarks/results/paper_clock_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    policy = torch.nn.Sequential(
        torch.nn.Linear(17, 100), torch.nn.ReLU(),
        torch.nn.Linear(100, 100), torch.nn.ReLU(),
        torch.nn.Linear(100, 6),
    )  # fmt: skip
    times = {env_id: [] for env_id in ENVS}
    for repeat in range(args.repeats):
        for env_id in ENVS:
            times[env_id].append(episode_batch_seconds(env_id, policy, repeat))
    rows = [
        {
            "env": env_id,
            "env_s": float(np.median([t[0] for t in values])),
            "policy_s": float(np.median([t[1] for t in values])),
        }
        for env_id, values in times.items()
    ]
    ratio = rows[1]["env_s"] / rows[0]["env_s"]
    result = {
        "benchmark": "paper_clock_speed",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "mujoco": mujoco.__version__,
        "copies": COPIES,
        "horizon": HORIZON,
        "repeats": args.repeats,
        "rows": rows,
        "env_time_ratio_paper_clock_to_v0": ratio,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{COPIES} copies x {HORIZON} steps, median of {args.repeats}, one core")
    print(f"{'env':38s} {'env.step s':>10s} {'policy s':>9s}")
    for row in rows:
        print(f"{row['env']:38s} {row['env_s']:10.2f} {row['policy_s']:9.2f}")
    print(f"env time, PaperClock / v0: {ratio:.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
