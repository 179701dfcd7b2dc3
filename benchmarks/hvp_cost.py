"""What does one Hessian-vector product of the MAML-TRPO step cost, by meta-batch size?

With full-data products (`hvp_subsample: 1.0`) the conjugate gradient is most of a
HalfCheetah meta-iteration. Under load, an earlier session saw full-data products cost
6x (MAML) and 12x (pretrained) the subsampled ones on 4x the data. This measures it on
one sampled meta-batch, the one a checkpoint's next iteration trains on:
  - by tasks: the KL gradient with its graph (`build`, once per step) and one product
    (`product`, `cg_iters` per step) on the first n tasks, for each n of `--tasks`;
    per task and as a ratio to the smallest n's per-task cost (1.0: linear);
  - by chunk: the same on all tasks computed in chunks of c tasks (how
    `MetaObjective.chunks` bounds memory), and each chunking's product against the
    unchunked one (relative difference: the same product, summed in another order).
Times are the fastest of `--repeats`, one learner thread.

    python benchmarks/hvp_cost.py --case CONFIG@CHECKPOINT [--set KEY=VALUE ...] \
        [--tasks 5,10,20] [--chunks 20,10,5,1] [--repeats 3] [-o OUT.json]

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from hvp_subsample_steps import sampled_case  # benchmarks/ is first on sys.path
from speed import machine

from metarl.maml_trpo import MetaObjective
from metarl.policies import policy_params
from metarl.trpo import exact_hvp, flatten


def fastest(function, repeats: int) -> tuple[float, object]:
    """(the fastest wall time of `repeats` calls, the last call's value)."""
    best, value = float("inf"), None
    for _ in range(repeats):
        clock = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - clock)
    return best, value


def chunked_cost(objective: MetaObjective, chunk: int, vector, repeats: int) -> dict:
    """Build and product times of the objective's KL Hessian in chunks of `chunk` tasks."""
    parts = objective.chunks(chunk)
    theta = flatten(objective.meta_like).clone().requires_grad_()

    def build():
        return [(weight, part.kl_gradient_at(theta)) for weight, part in parts]

    build_s, gradients = fastest(build, repeats)
    product_s, product = fastest(
        lambda: sum(w * exact_hvp(g, theta, vector) for w, g in gradients), repeats
    )
    return {"build_s": build_s, "product_s": product_s, "product": product}


def measure(case: str, overrides: list[str], task_counts: list[int], chunks: list[int],
            repeats: int) -> dict:  # fmt: skip
    config, training, batch, iteration = sampled_case(case, overrides, 0)
    params = {name: p.detach() for name, p in policy_params(training.policy).items()}
    objective = MetaObjective.around(training.policy, params, batch, training.settings)
    tasks = objective.data.valid.num_tasks
    vector = torch.randn_like(
        flatten(objective.meta_like), generator=torch.Generator().manual_seed(0)
    )
    by_tasks = []
    for count in task_counts:
        if count > tasks:
            raise SystemExit(f"--tasks {count}: the meta-batch has {tasks} tasks")
        part = objective.restricted(torch.arange(count))
        cost = chunked_cost(part, count, vector, repeats)
        by_tasks.append(
            {"tasks": count, "build_s": cost["build_s"], "product_s": cost["product_s"]}
        )
    smallest = by_tasks[0]
    for row in by_tasks:
        scale = row["tasks"] / smallest["tasks"]
        row["product_vs_linear"] = row["product_s"] / (smallest["product_s"] * scale)
        row["build_vs_linear"] = row["build_s"] / (smallest["build_s"] * scale)
    by_chunk, whole = [], None
    for chunk in chunks:
        cost = chunked_cost(objective, chunk, vector, repeats)
        whole = cost["product"] if whole is None else whole
        difference = float((cost.pop("product") - whole).norm() / whole.norm())
        by_chunk.append({"chunk": chunk, **cost, "relative_difference": difference})
    steps = int(batch.valid.step_mask.shape[1])
    return {
        "case": case,
        "iteration": iteration,
        "meta_batch_size": tasks,
        "valid_steps_per_task": steps,
        "parameters": int(flatten(objective.meta_like).numel()),
        "by_tasks": by_tasks,
        "by_chunk": by_chunk,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", required=True, help="CONFIG or CONFIG@CHECKPOINT")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--tasks", default="5,10,20", help="task counts, smallest first")
    parser.add_argument("--chunks", default="20,10,5,1", help="chunk sizes, the first whole")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("-o", "--out", default="benchmarks/results/hvp_cost.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    counts = [int(n) for n in args.tasks.split(",")]
    chunks = [int(c) for c in args.chunks.split(",")]
    if counts != sorted(counts) or min(counts + chunks) < 1:
        raise SystemExit("--tasks: positive counts, smallest first; --chunks: positive sizes")
    result = measure(args.case, args.set, counts, chunks, args.repeats)
    out = {
        "benchmark": "hvp_cost",
        "machine": machine(),
        "command": "python benchmarks/hvp_cost.py " + " ".join(sys.argv[1:]),
        **result,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"{result['case']}: iteration {result['iteration']}, "
          f"{result['valid_steps_per_task']} validation steps a task")  # fmt: skip
    print("| tasks | build (s) | product (s) | product per task (s) | product / linear | "
          "build / linear |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for row in result["by_tasks"]:
        print(f"| {row['tasks']} | {row['build_s']:.2f} | {row['product_s']:.2f} | "
              f"{row['product_s'] / row['tasks']:.3f} | {row['product_vs_linear']:.2f} | "
              f"{row['build_vs_linear']:.2f} |")  # fmt: skip
    print()
    print("| chunk (tasks) | build (s) | product (s) | product vs unchunked (relative) |")
    print("|---|---|---|---|")
    for row in result["by_chunk"]:
        print(f"| {row['chunk']} | {row['build_s']:.2f} | {row['product_s']:.2f} | "
              f"{row['relative_difference']:.1e} |")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
