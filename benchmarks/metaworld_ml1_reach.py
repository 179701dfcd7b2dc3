"""Learning check on Meta-World ML1 reach at a reduced budget: does adaptation learn to succeed?

    python benchmarks/metaworld_ml1_reach.py --train   # train (or resume) runs/ml1_reach_check
    python benchmarks/metaworld_ml1_reach.py           # summarize it

Trains configs/metaworld_ml1_reach.yaml with the budget below (one core, local
sampler), then writes benchmarks/results/metaworld_ml1_reach.json and prints the
success rate before and after the one adaptation step, averaged over blocks of
iterations. The success rate is the fraction of the meta-batch's episodes that
reached the goal (Meta-World's `success`) at some step.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "metaworld_ml1_reach.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "metaworld_ml1_reach.json"
# The committed result: a run started with 30 iterations and stopped (SIGTERM, checkpoint)
# after 15 for time; an iteration's computation depends only on (seed, iteration), so
# it equals a 15-iteration run.
BUDGET = {
    "iterations": 15,
    "meta_batch_size": 10,
    "rollouts_per_task": 5,
    "num_envs": 50,
    "torch_threads": 1,
}
BLOCK = 5  # iterations averaged per table row


def run_training(run_dir: Path) -> None:
    if (run_dir / "checkpoint.pt").exists():
        command = ["train", "--resume", str(run_dir)]
    else:
        overrides = [f"--set={key}={value}" for key, value in BUDGET.items()]
        command = ["train", str(CONFIG), *overrides, "--run-dir", str(run_dir)]
    subprocess.run([sys.executable, "-m", "metarl.cli", *command, "--no-progress"], check=True)


def summarize(run_dir: Path) -> dict:
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    if not rows:
        raise SystemExit(f"{run_dir}/metrics.csv has no iterations yet")
    columns = ("success_pre", "success_post_1", "return_pre", "return_post_1")
    per_iteration = [{k: float(r[k]) for k in ("iteration", "env_steps", *columns)} for r in rows]
    blocks = []
    for start in range(0, len(rows), BLOCK):
        chunk = per_iteration[start : start + BLOCK]
        block = {
            "iterations": [int(chunk[0]["iteration"]), int(chunk[-1]["iteration"])],
            "env_steps_end": int(chunk[-1]["env_steps"]),
        }
        block.update({k: sum(c[k] for c in chunk) / len(chunk) for k in columns})
        blocks.append(block)
    return {
        "config": str(CONFIG.relative_to(ROOT)),
        "budget": BUDGET,
        "iterations_done": len(rows),
        "wall_s": float(rows[-1]["wall_s"]),
        "blocks": blocks,
        "per_iteration": per_iteration,
    }


def table(result: dict) -> str:
    lines = [
        "| iterations | env steps | success before adaptation | success after 1 step "
        "| return before | return after |",
        "|---|---|---|---|---|---|",
    ]
    for b in result["blocks"]:
        first, last = b["iterations"]
        lines.append(
            f"| {first}-{last} | {b['env_steps_end'] / 1e6:.2f}M | {b['success_pre']:.2f} "
            f"| {b['success_post_1']:.2f} | {b['return_pre']:.0f} | {b['return_post_1']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "ml1_reach_check")
    parser.add_argument("--train", action="store_true", help="train or resume the run first")
    args = parser.parse_args()
    if args.train:
        run_training(args.run_dir)
    result = summarize(args.run_dir)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"({result['iterations_done']} iterations, {result['wall_s'] / 60:.0f} min; "
          f"wrote {RESULTS.relative_to(ROOT)})")  # fmt: skip


if __name__ == "__main__":
    main()
