"""Why Ant episodes end early: where the torso is when an episode terminates.

An Ant episode terminates when the torso's height leaves the healthy range
[0.2, 1.0] (Gymnasium's Ant-v5 default, which metarl's Ant envs keep). This runs
zero-mean Gaussian actions of several standard deviations (what a fresh policy's
exploration does: sigma 1 at the default log-std 0, 0.37 in the Ant configs), or a checkpoint's
stochastic policy, and counts the episodes that end above 1.0 (the ant hopped out)
and below 0.2 (it fell):

    python benchmarks/ant_terminations.py [--checkpoint benchmarks/runs/ant_vel/checkpoint.pt]

Writes benchmarks/results/ant_terminations.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium
import numpy as np
import torch

import metarl_envs  # noqa: F401  (registers the envs)
from metarl.checkpoints import load_checkpoint
from metarl.resuming import policy_from_checkpoint

ENVS = ("metarl/AntDir-v0", "metarl/AntVel-v0")
STDS = (1.0, float(np.exp(-0.5)), float(np.exp(-1.0)), 0.0)


def episode_ends(env_id: str, act, episodes: int, seed: int) -> dict:
    """Mean length and where episodes ended, for actions from `act(observation, rng)`."""
    rng = np.random.default_rng(seed)
    env = gymnasium.make(env_id)
    lengths, above, below = [], 0, 0
    for _ in range(episodes):
        observation, _ = env.reset(seed=int(rng.integers(2**31)))
        steps = 0
        while True:
            observation, _, terminated, truncated, _ = env.step(act(observation, rng))
            steps += 1
            if terminated:
                height = float(env.unwrapped.data.qpos[2])
                above, below = above + (height > 1.0), below + (height < 0.2)
            if terminated or truncated:
                break
        lengths.append(steps)
    return {
        "mean_length": float(np.mean(lengths)),
        "ended_above_1": int(above),
        "ended_below_0.2": int(below),
        "episodes": episodes,
    }


def policy_actions(policy):
    """`act(observation, rng)` for `episode_ends`: the policy's stochastic actions."""

    def act(observation, rng):
        with torch.no_grad():
            mean, log_std = policy(torch.as_tensor(observation, dtype=torch.float32))
            noise = torch.from_numpy(rng.standard_normal(mean.shape[-1]).astype(np.float32))
            return (mean + log_std.exp() * noise).reshape(-1).numpy()

    return act


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--checkpoint", action="append", default=[], help="an Ant checkpoint")
    parser.add_argument("--out", default="benchmarks/results/ant_terminations.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for env_id in ENVS:
        for std in STDS:

            def gaussian(observation, rng, std=std):
                return np.clip(std * rng.standard_normal(8), -1, 1).astype(np.float32)

            rows.append({"env": env_id, "actions": f"N(0, {std:.2f}^2)",
                         **episode_ends(env_id, gaussian, args.episodes, 0)})  # fmt: skip
    for path in args.checkpoint:
        config, policy = policy_from_checkpoint(load_checkpoint(path))
        ends = episode_ends(config.env, policy_actions(policy), args.episodes, 0)
        rows.append({"env": config.env, "actions": f"policy of {path}", **ends})
    Path(args.out).write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    print("| env | actions | mean episode length | ended above z = 1.0 | ended below z = 0.2 |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['env']} | {row['actions']} | {row['mean_length']:.0f} | "
              f"{row['ended_above_1']} of {row['episodes']} | "
              f"{row['ended_below_0.2']} of {row['episodes']} |")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
