"""Supervised MAML benchmark: sinusoid and Omniglot results of every method, and throughput.

Trains each method from the shipped configs (at the reduced scale below, on one
thread), evaluates the best-validation checkpoint on held-out tasks and prints
markdown tables:

- sinusoid, trained at K = 10, evaluated at K = 5, 10, 20: query MSE after 0, 1 and 10
  fine-tuning steps (mean +- 95% CI over held-out tasks) for MAML (second and first
  order), the pretrained baseline, the oracle, multi-task averaging and the context vector;
- Omniglot 5-way 1-shot and 5-shot (conv net; context vector for 1-shot) on the shipped
  "background small" zips: accuracy after 0, 1 and 3 steps;
- meta-training throughput (tasks/s) with and without vmap, measured alternately in
  the same process.

    python benchmarks/supervised.py              # about 20 minutes on one core
    python benchmarks/supervised.py --quick      # a minute: checks the script only
    python benchmarks/supervised.py --only "omniglot_5way1shot / context vector"

Writes benchmarks/results/supervised.json (unless --quick, which writes beside the runs).
`--only RUN` (repeatable) trains and evaluates only the named runs and replaces their
entries in the existing JSON, each with the command that measured it; the other entries
and the throughput stay as they were.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from metarl.checkpoints import load_checkpoint
from metarl.config_validation import load_config
from metarl.runtime import keep_freed_memory
from metarl.supervised.config import SupervisedConfig
from metarl.supervised.evaluate import evaluate_model, model_from_checkpoint
from metarl.supervised.models import model_params
from metarl.supervised.problems import STREAMS, build_model, make_task_sampler
from metarl.supervised.tasks import seeded_rng
from metarl.supervised.trainer import adam_meta_step, train_supervised

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "supervised.json"

# method -> overrides of configs/sinusoid.yaml (the full scale; --quick cuts iterations)
SINUSOID_METHODS = {
    "MAML": [],
    "MAML first-order": ["first_order=true"],
    "pretrained": ["algorithm=pretrain"],
    "oracle": ["algorithm=oracle"],
    "multi-task": ["algorithm=multitask", "meta_lr=0.003", "iterations=2000"],
    "context vector": ["algorithm=context"],
}
SINUSOID_SCALE = ["iterations=30000", "val_interval=2000", "checkpoint_interval=10000"]
# (config, method) -> overrides
OMNIGLOT_RUNS = {
    ("omniglot_5way1shot", "MAML"): ["iterations=1500"],
    ("omniglot_5way1shot", "context vector"): ["algorithm=context", "iterations=600"],
    ("omniglot_5way5shot", "MAML"): ["iterations=400", "meta_batch_size=16", "task_chunk=0"],
}
QUICK = ["iterations=40", "val_interval=20", "log_interval=10", "multitask_models=20"]
EVAL_TASKS = 600


def run_method(config_name: str, overrides: list[str], runs: Path, quick: bool) -> dict:
    """Train one method into its own run directory; evaluate its best checkpoint."""
    overrides = ["torch_threads=1", f"data_path={ROOT / 'data' / 'omniglot'}", *overrides]
    if quick:
        overrides += QUICK
    config = load_config(SupervisedConfig, ROOT / "configs" / f"{config_name}.yaml", overrides)
    run_dir = runs / f"{config_name}-{config.algorithm}-{len(list(runs.iterdir()))}"
    clock = time.perf_counter()
    train_supervised(config, run_dir, show_progress=False)
    train_s = time.perf_counter() - clock
    checkpoint = load_checkpoint(run_dir / "best.pt")
    config, model = model_from_checkpoint(checkpoint, str(run_dir / "best.pt"))
    tasks = 20 if quick else EVAL_TASKS
    clock = time.perf_counter()
    rows = evaluate_model(
        model, config, checkpoint["eval_lr"], tasks, config.eval_steps, config.seed
    )
    return {
        "overrides": overrides,
        "iterations": config.iterations,
        "meta_batch_size": config.meta_batch_size,
        "best_iteration": checkpoint["iteration"],
        "eval_lr": checkpoint["eval_lr"],
        "train_s": train_s,
        "eval_s": time.perf_counter() - clock,
        "eval_tasks": tasks,
        "rows": rows,
    }


def cell(result: dict, shots: int, step: int, metric: str) -> str:
    for r in result["rows"]:
        if (r["shots"], r["step"], r["metric"]) == (shots, step, metric):
            if metric == "accuracy":
                text = f"{100 * r['mean']:.1f} ± {100 * r['ci95']:.1f}%"
            else:
                text = f"{r['mean']:.3f} ± {r['ci95']:.3f}"
            return text + (f" ({r['diverged']} diverged)" if r["diverged"] else "")
    return "–"


def sinusoid_table(results: dict) -> str:
    columns = [(10, 0)] + [(k, s) for k in (5, 10, 20) for s in (1, 10)]
    head = " | ".join(f"K={k}, {s} step{'s' * (s != 1)}" for k, s in columns)
    lines = [f"| method | {head} |", "|---" * (1 + len(columns)) + "|"]
    for method, result in results.items():
        cells = [cell(result, k, s, "mse") for k, s in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def omniglot_table(results: dict) -> str:
    lines = [
        "| task | method | iterations x meta-batch | 0 steps | 1 step | 3 steps | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, result in results.items():
        config_name, method = key.split(" / ")
        shots = 1 if "1shot" in config_name else 5
        task = f"5-way {shots}-shot"
        scale = f"{result['iterations']} x {result['meta_batch_size']}"
        cells = [cell(result, shots, s, "accuracy") for s in (0, 1, 3)]
        lines.append(
            f"| {task} | {method} | {scale} | "
            + " | ".join(cells)
            + f" | {result['train_s']:.0f} |"
        )
    return "\n".join(lines)


def throughput(rounds: int, seconds: float) -> list[dict]:
    """Meta-training tasks/s with and without vmap, alternating in this process."""
    cases = {
        "sinusoid MAML (25 tasks, K=10)": ("sinusoid", []),
        "Omniglot conv 5-way 1-shot (32 tasks)": ("omniglot_5way1shot", ["task_chunk=0"]),
        "Omniglot conv 5-way 1-shot, first-order": (
            "omniglot_5way1shot",
            ["task_chunk=0", "first_order=true"],
        ),
        "Omniglot mlp 5-way 1-shot (32 tasks)": ("omniglot_5way1shot", ["model=mlp"]),
    }
    results = []
    for name, (config_name, overrides) in cases.items():
        overrides = [f"data_path={ROOT / 'data' / 'omniglot'}", *overrides]
        config = load_config(SupervisedConfig, ROOT / "configs" / f"{config_name}.yaml", overrides)
        sampler = make_task_sampler(config)
        model = build_model(config)
        optimizer = torch.optim.Adam(model_params(model).values(), lr=config.meta_lr)
        rng = seeded_rng(0, STREAMS["train"])
        batch = sampler.sample("train", rng, config.meta_batch_size, config.shots, config.query)
        timings = {True: [0.0, 0], False: [0.0, 0]}
        for _ in range(rounds):
            for use_vmap in (True, False):
                variant = dataclasses.replace(config, vmap=use_vmap)
                adam_meta_step(model, batch, variant, optimizer)  # warm-up
                start = time.perf_counter()
                while time.perf_counter() - start < seconds:
                    adam_meta_step(model, batch, variant, optimizer)
                    timings[use_vmap][1] += 1
                timings[use_vmap][0] += time.perf_counter() - start
        rates = {v: config.meta_batch_size * n / s for v, (s, n) in timings.items()}
        results.append(
            {
                "case": name,
                "tasks_per_s_vmap": rates[True],
                "tasks_per_s_loop": rates[False],
                "speedup": rates[True] / rates[False],
            }
        )
        print(f"{name}: vmap {rates[True]:.0f} tasks/s, loop {rates[False]:.0f} tasks/s")
    return results


def throughput_table(results: list[dict]) -> str:
    lines = [
        "| meta-training step | vmap tasks/s | loop tasks/s | vmap / loop |",
        "|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['case']} | {r['tasks_per_s_vmap']:.0f} | {r['tasks_per_s_loop']:.0f} "
            f"| {r['speedup']:.2f} |"
        )
    return "\n".join(lines)


def all_runs() -> dict[str, tuple[str, str, str, list[str]]]:
    """Run name ("config / method") -> (JSON section, entry key, config, overrides)."""
    runs = {
        f"sinusoid / {method}": ("sinusoid", method, "sinusoid", SINUSOID_SCALE + overrides)
        for method, overrides in SINUSOID_METHODS.items()
    }
    for (config_name, method), overrides in OMNIGLOT_RUNS.items():
        name = f"{config_name} / {method}"
        runs[name] = ("omniglot", name, config_name, overrides)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny scale, checks the script")
    parser.add_argument("--runs", type=Path, default=None, help="keep the runs here")
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    parser.add_argument("--only", action="append", metavar="RUN", help="re-measure this run")
    args = parser.parse_args()
    unknown = sorted(set(args.only or []) - set(all_runs()))
    if unknown:
        parser.error(f"--only: unknown run(s) {unknown}; runs: {list(all_runs())}")
    torch.set_num_threads(1)
    keep_freed_memory()
    runs = args.runs or Path(tempfile.mkdtemp(prefix="metarl-supervised-"))
    runs.mkdir(parents=True, exist_ok=True)
    out = args.out or (runs / "supervised.json" if args.quick else RESULTS)
    command = shlex.join(["python", "benchmarks/supervised.py", *sys.argv[1:]])
    started = time.perf_counter()

    report = {"sinusoid": {}, "omniglot": {}, "throughput": []}
    if args.only and out.exists():
        report = json.loads(out.read_text())
    for name, (section, key, config_name, overrides) in all_runs().items():
        if args.only and name not in args.only:
            continue
        result = run_method(config_name, overrides, runs, args.quick)
        report[section][key] = {**result, "command": command} if args.only else result
        print(f"{name}: trained in {result['train_s']:.0f} s")
    if not args.only:
        report["throughput"] = throughput(1 if args.quick else 3, 0.5 if args.quick else 5.0)
        report.update(
            command=command,
            torch=torch.__version__,
            threads=torch.get_num_threads(),
            machine=platform.processor() or platform.machine(),
            total_s=time.perf_counter() - started,
        )
    sinusoid, omniglot, speed = report["sinusoid"], report["omniglot"], report["throughput"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print("\nSinusoid query MSE (trained at K=10; mean ± 95% CI over held-out sinusoids)")
    print(sinusoid_table(sinusoid))
    print("\nOmniglot accuracy (mean ± 95% CI over held-out meta-test tasks)")
    print(omniglot_table(omniglot))
    print("\nThroughput (one thread)")
    print(throughput_table(speed))
    minutes = (time.perf_counter() - started) / 60
    print(f"\nwritten to {out} in {minutes:.1f} min; runs in {runs}")


if __name__ == "__main__":
    main()
