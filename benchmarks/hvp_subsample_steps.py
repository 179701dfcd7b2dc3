"""What does `hvp_subsample` do to TRPO's meta-step as a run trains?

A long run with `hvp_subsample: 0.25` (Hessian-vector products on 5 of 20 tasks)
backtracks more as it trains. This measures the meta-step itself at points of a run:
for each case (CONFIG@CHECKPOINT, or CONFIG for its random init) it samples the
meta-batch of the checkpoint's next iteration (the tasks and rollout seeds training
used), then takes `metarl.maml_trpo.meta_step` from it once with full-data products
and `--draws` times with the subsample (each a different draw of tasks), and reports
per step:
  - the line-search tries (1 = the full trust-region step was accepted);
  - the accepted KL;
  - the surrogate's improvement on the batch (surrogate before - after: what the step
    gains on the data it was computed from);
  - the cosine of the parameter change to the full-data step's.

A subsampled curvature that misses most tasks' directions gives a natural-gradient
step in a worse direction: the line search shrinks it until the KL fits, and it
gains less on the same data. The in-sample gain is not the gain on fresh rollouts;
it is what TRPO's step maximizes, so it compares the two products' steps directly.

    python benchmarks/hvp_subsample_steps.py --case CONFIG --case CONFIG@CHECKPOINT ... \
        --set meta_batch_size=20 --set hvp_subsample=0.25 --draws 3 --batches 3 -o OUT.json

(the checkpoints of a committed run at earlier iterations: `git show REV:PATH > FILE`).

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from speed import machine  # benchmarks/ is first on sys.path

from metarl.checkpoints import load_checkpoint
from metarl.config import TrainConfig
from metarl.config_validation import load_config
from metarl.experiment import iteration_tasks
from metarl.maml_trpo import meta_step
from metarl.meta_iteration import Training
from metarl.policies import policy_params
from metarl.trpo import flatten


def sampled_case(case: str, overrides: list[str], offset: int):
    """(config, training, meta-batch, iteration) of a case: the meta-batch of iteration
    (checkpoint's next + offset), sampled with the checkpoint's parameters."""
    config_path, _, checkpoint_path = case.partition("@")
    run = ["sampler=local", "torch_threads=1", "device=cpu", "checkpoint_every=1000"]
    config = load_config(TrainConfig, config_path, overrides + run)
    training = Training(config)
    iteration = 0
    if checkpoint_path:
        checkpoint = load_checkpoint(checkpoint_path)
        training.commit(checkpoint["policy"])
        iteration = int(checkpoint["state"]["iteration"])
    iteration += offset
    try:
        params = policy_params(training.policy)
        batch = training.sampler.sample(params, iteration_tasks(config, iteration), iteration)
    finally:
        training.close()
    return config, training, batch, iteration


def step_row(training: Training, batch, fraction: float, seed: int) -> tuple[dict, torch.Tensor]:
    """One meta-step with `hvp_subsample: fraction`; (its statistics, its parameter change)."""
    params = {name: p.detach() for name, p in policy_params(training.policy).items()}
    settings = replace(training.settings, hvp_subsample=fraction)
    clock = time.perf_counter()
    new_params, stats = meta_step(
        training.policy, params, batch, settings, np.random.default_rng(seed)
    )
    row = {
        "hvp_subsample": fraction,
        "seed": seed,
        "line_search_steps": stats.line_search_steps,
        "accepted": stats.accepted,
        "kl": stats.kl,
        "surrogate_gain": stats.surrogate_before - stats.surrogate_after,
        "seconds": time.perf_counter() - clock,
    }
    return row, flatten(new_params) - flatten(params)


def measure(case: str, overrides: list[str], draws: int, offset: int) -> dict:
    config, training, batch, iteration = sampled_case(case, overrides, offset)
    full, full_change = step_row(training, batch, 1.0, 0)
    rows = [full]
    for seed in range(draws):
        row, change = step_row(training, batch, config.hvp_subsample, seed)
        row["cosine_to_full"] = float(
            change.dot(full_change) / (change.norm() * full_change.norm()).clamp(min=1e-30)
        )
        rows.append(row)
    subsampled = rows[1:]
    summary = {
        key: statistics.mean(r[key] for r in subsampled)
        for key in ("line_search_steps", "kl", "surrogate_gain", "cosine_to_full")
    }
    summary["gain_over_full"] = summary["surrogate_gain"] / full["surrogate_gain"]
    return {
        "case": case,
        "iteration": iteration,
        "hvp_subsample": config.hvp_subsample,
        "meta_batch_size": config.meta_batch_size,
        "rows": rows,
        "subsampled_mean": summary,
    }


def per_case(results: list[dict], case: str) -> dict:
    """Means over a case's batches: tries of each product, the subsampled steps' gain
    relative to the full step's on the same batch, and their cosine to it."""
    mine = [r for r in results if r["case"] == case]
    return {
        "case": case,
        "batches": len(mine),
        "iterations": [r["iteration"] for r in mine],
        "full_tries": statistics.mean(r["rows"][0]["line_search_steps"] for r in mine),
        "subsampled_tries": statistics.mean(
            r["subsampled_mean"]["line_search_steps"] for r in mine
        ),
        "gain_over_full": statistics.mean(r["subsampled_mean"]["gain_over_full"] for r in mine),
        "cosine_to_full": statistics.mean(r["subsampled_mean"]["cosine_to_full"] for r in mine),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--case", action="append", required=True, help="CONFIG or CONFIG@CHECKPOINT (repeatable)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--draws", type=int, default=4, help="subsampled steps per batch")
    parser.add_argument(
        "--batches",
        type=int,
        default=1,
        help="meta-batches per case: those of the checkpoint's next iterations",
    )
    parser.add_argument("-o", "--out", default="benchmarks/results/hvp_subsample_steps.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = [
        measure(case, args.set, args.draws, offset)
        for case in args.case
        for offset in range(args.batches)
    ]
    out = {
        "benchmark": "hvp_subsample_steps",
        "machine": machine(),
        "command": "python benchmarks/hvp_subsample_steps.py " + " ".join(sys.argv[1:]),
        "per_case": [per_case(results, case) for case in args.case],
        "batches": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(
        "| case | iteration | products | tries | KL | surrogate gain | gain / full | "
        "cosine to full |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for result in results:
        full, sub = result["rows"][0], result["subsampled_mean"]
        config_path, _, checkpoint_path = result["case"].partition("@")
        name = Path(checkpoint_path).parent.name if checkpoint_path else f"{config_path} (init)"
        print(
            f"| {name} | {result['iteration']} | full | {full['line_search_steps']} | "
            f"{full['kl']:.4f} | {full['surrogate_gain']:.4f} | 1 | 1 |"
        )
        print(
            f"| {name} | {result['iteration']} | {result['hvp_subsample']:g} "
            f"(mean of {len(result['rows']) - 1}) | {sub['line_search_steps']:.1f} | "
            f"{sub['kl']:.4f} | {sub['surrogate_gain']:.4f} | {sub['gain_over_full']:.2f} | "
            f"{sub['cosine_to_full']:.2f} |"
        )
    print()
    print("| case | batches | full: tries | subsampled: tries | gain / full | cosine to full |")
    print("|---|---|---|---|---|---|")
    for case in out["per_case"]:
        print(
            f"| {case['case']} | {case['batches']} | {case['full_tries']:.1f} | "
            f"{case['subsampled_tries']:.1f} | {case['gain_over_full']:.2f} | "
            f"{case['cosine_to_full']:.2f} |"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
