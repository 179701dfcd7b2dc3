"""Whole MAML-TRPO meta-iterations and their phases, at the paper's scale, on CPU and GPU.

Scenarios (each in a fresh process, so its peak memory is its own), each timed by the
trainer's own `Training.run_iteration` (median over the measured iterations, after a
warm-up iteration):

- nav-tanh64 / nav-relu100: Navigation2D, 20 tasks x 20 rollouts x 100 steps, one inner
  step, second order, 10 CG iterations; pytorch-maml-rl's 2x64 tanh network and the
  paper's 2x100 ReLU. `-sub25`: hvp_subsample 0.25, with that HVP's error against the
  full-data product and the CG step's cosine with the full-data one.
- cheetah / cheetah-sub25: HalfCheetahVel at the paper's scale, 40 tasks x 20 rollouts x
  200 steps, 2x100 ReLU. The sampler's rate is reported against the raw physics rate
  (benchmarks/env_step_rate.py), one core.
- every scenario but the ablations: the update's arithmetic floor, the floating-point
  operations of one update (matrix products of every forward and backward pass, second
  order included, counted with torch's flop formulas) divided by this process's float32
  matmul rate (a 2048 x 2048 product, same threads); reported as update time / floor, split by a
  torch.profiler profile of the same update into the products' own time over the floor
  and the update's time over the products' (everything else).
- ablations (nav-tanh64 data): one-sided vs central finite-difference vs exact Hessian-
  vector products; all tasks batched vs a Python loop over tasks for the meta-gradient.
- pytorch-maml-rl (`--anchor DIR`): its Navigation2D meta-iteration at its own settings
  and metarl's nav-tanh64, alternately, `--rounds` times: the speed ratio from one run.

`--devices cpu,cuda` runs the scenarios on each learner device (`device` config key;
sampling stays on CPU); on a GPU, phase times inside the update are not synchronized,
the update's total is. Usage:

    python benchmarks/meta_iteration.py [--iterations 5] [--cheetah-iterations 2]
        [--only nav-tanh64,...] [--devices cpu] [--anchor DIR --rounds 2]
        [--out benchmarks/results/meta_iteration.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import mujoco
import torch
from anchor import anchor_iteration_seconds, check_anchor
from env_step_rate import raw_rate  # benchmarks/ is the script's folder, first on sys.path
from update_measures import ablations, hvp_subsample_error, update_floor

from metarl.config import TrainConfig
from metarl.config_validation import config_from_dict
from metarl.meta_iteration import Training

NAV = dict(env="metarl/Navigation2D-v0", meta_batch_size=20, rollouts_per_task=20)
CHEETAH = dict(env="metarl/HalfCheetahVel-v0", meta_batch_size=40, rollouts_per_task=20)
SCENARIOS = {
    "nav-relu100": dict(NAV, hidden_sizes=[100, 100], activation="relu"),
    "nav-tanh64": dict(NAV, hidden_sizes=[64, 64], activation="tanh"),
    "cheetah": dict(CHEETAH, hidden_sizes=[100, 100], activation="relu", num_envs=800),
}
NAMES = [
    "nav-relu100",
    "nav-relu100-sub25",
    "nav-tanh64",
    "nav-tanh64-sub25",
    "ablations",
    "cheetah",
    "cheetah-sub25",
]


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def scenario_values(name: str, device: str) -> dict:
    base = name.removesuffix("-sub25")
    values = dict(SCENARIOS.get(base, SCENARIOS["nav-tanh64"]), device=device)
    if name.endswith("-sub25"):
        values["hvp_subsample"] = 0.25
    return values


def time_iterations(training: Training, iterations: int) -> dict:
    """Warm-up + `iterations` meta-iterations of the trainer; median phase times."""
    rows = []
    for iteration in range(iterations + 1):
        clock = time.perf_counter()
        new_params, row = training.run_iteration(iteration)
        training.commit(new_params)
        row["iteration_s"] = time.perf_counter() - clock
        if iteration > 0:  # the first iteration is the warm-up
            rows.append(row)
    timed = [k for k in rows[0] if k.endswith("_s") or k == "env_steps_per_s"]
    median = {k: statistics.median(r[k] for r in rows) for k in timed}
    return {**median, "accepted": sum(r["accepted"] for r in rows), "iterations": len(rows)}


def run_scenario(name: str, iterations: int, device: str) -> dict:
    """One scenario on one learner device, in its own process."""
    values = scenario_values(name, device)
    training = Training(config_from_dict(TrainConfig, values))
    result: dict = {"scenario": name, "device": str(training.device)}
    try:
        if name == "ablations":
            result.update(ablations(training))
            return result
        result.update(time_iterations(training, iterations))
        result["peak_memory_mb"] = peak_memory_mb()  # training's own, before the measures
        if name.endswith("-sub25"):
            result.update(hvp_subsample_error(training, 0.25))
        result.update(update_floor(training, result["update_s"]))
        if name.startswith("cheetah"):
            raw = raw_rate(values["env"], seconds=3.0)
            result["raw_physics_env_steps_per_s"] = raw
            result["sampler_to_raw_ratio"] = result["env_steps_per_s"] / raw
        if torch.cuda.is_available() and training.device.type == "cuda":
            result["gpu"] = torch.cuda.get_device_name()
            result["gpu_peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    finally:
        training.close()
    result["peak_memory_with_measures_mb"] = peak_memory_mb()  # floor count, profile, ...
    return result


def in_fresh_process(name: str, iterations: int, device: str) -> dict:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(run_scenario, name, iterations, device).result()


def side_by_side(anchor: Path, rounds: int, iterations: int) -> dict:
    """pytorch-maml-rl and metarl's nav-tanh64 meta-iterations, alternately, `rounds` times."""
    check_anchor(anchor)
    rows = []
    for round_index in range(rounds):
        anchor_s = statistics.median(anchor_iteration_seconds(anchor, iterations))
        ours = in_fresh_process("nav-tanh64", iterations, "cpu")
        rows.append(
            {
                "round": round_index,
                "pytorch_maml_rl_s": anchor_s,
                "metarl_s": ours["iteration_s"],
                "ratio": anchor_s / ours["iteration_s"],
            }
        )
        print(f"round {round_index}: {rows[-1]}", flush=True)
    return {"scenario": "pytorch-maml-rl", "rounds": rows}


def print_table(results: list[dict]) -> None:
    print(
        f"{'scenario':<20}{'device':>7}{'iter s':>8}{'sample s':>10}{'update s':>10}"
        f"{'adapt':>7}{'metagrad':>9}{'CG':>7}{'search':>8}{'steps/s':>9}{'peak MB':>9}"
    )
    for r in results:
        if "iteration_s" in r:
            print(
                f"{r['scenario']:<20}{r['device']:>7}{r['iteration_s']:>8.2f}"
                f"{r['sampling_s']:>10.2f}{r['update_s']:>10.2f}{r['adaptation_s']:>7.2f}"
                f"{r['meta_gradient_s']:>9.2f}{r['conjugate_gradient_s']:>7.2f}"
                f"{r['line_search_s']:>8.2f}{r['env_steps_per_s']:>9.0f}"
                f"{r['peak_memory_mb']:>9.0f}"
            )
    for r in results:
        label = f"{r['scenario']} ({r.get('device', 'cpu')})"
        if "hvp_relative_error" in r:
            print(
                f"{label}: subsampled HVP relative error {r['hvp_relative_error']:.3f}, "
                f"CG step cosine {r['step_cosine']:.3f}"
            )
        if "update_floor_s" in r:
            print(
                f"{label}: update {r['update_s']:.2f} s = {r['update_over_floor']:.2f} x its "
                f"arithmetic floor {r['update_floor_s']:.2f} s ({r['update_gflop']:.0f} GFLOP "
                f"at {r['matmul_gflop_per_s']:.1f} GFLOP/s); update / sampling "
                f"{r['update_s'] / r['sampling_s']:.2f}"
            )
        if "profile_matmul_share" in r:
            top = ", ".join(
                f"{o['op']} {o['self_s'] / r['profile_ops_self_s']:.0%}"
                for o in r["profile_top_ops"]
            )
            print(
                f"{label}: profile: matrix products {r['profile_matmul_share']:.0%} of the "
                f"update's op time, at {r['products_gflop_per_s']:.1f} GFLOP/s "
                f"({r['products_over_floor']:.2f} x the floor), the rest "
                f"{r['update_over_products']:.2f} x on top; top ops: {top}"
            )
        if "sampler_to_raw_ratio" in r:
            print(
                f"{label}: sampler {r['env_steps_per_s']:.0f} env steps/s = "
                f"{r['sampler_to_raw_ratio']:.2f} x raw mj_step "
                f"({r['raw_physics_env_steps_per_s']:.0f}/s, one core)"
            )
        if r["scenario"] == "ablations":
            fd = r["hvp_finite_difference_10_products_s"]
            print(
                f"{label} (10 HVPs): one-sided FD {fd:.3f} s, central "
                f"{r['hvp_finite_difference_central_10_products_s'] / fd:.2f}x, exact "
                f"{r['hvp_exact_10_products_s'] / fd:.2f}x; meta-gradient: task loop "
                f"{r['meta_gradient_task_loop_s'] / r['meta_gradient_batched_s']:.2f}x the "
                f"batched {r['meta_gradient_batched_s']:.3f} s"
            )
        if r["scenario"] == "pytorch-maml-rl":
            ratios = [row["ratio"] for row in r["rounds"]]
            print(
                "pytorch-maml-rl / metarl nav-tanh64 meta-iteration, alternating rounds: "
                + ", ".join(
                    f"{row['pytorch_maml_rl_s']:.2f} s / {row['metarl_s']:.2f} s = "
                    f"{row['ratio']:.1f}x"
                    for row in r["rounds"]
                )
                + f" (median {statistics.median(ratios):.1f}x)"
            )
        if r.get("device", "cpu") != "cpu":
            cpu = next(
                (c for c in results if c["scenario"] == r["scenario"] and c["device"] == "cpu"),
                None,
            )
            if cpu and "update_s" in r:
                print(
                    f"{r['scenario']}: update on {r.get('gpu', r['device'])} "
                    f"{cpu['update_s'] / r['update_s']:.1f}x faster than on the CPU"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5, help="measured nav iterations")
    parser.add_argument("--cheetah-iterations", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--devices", default="cpu", help="learner devices, e.g. cpu,cuda")
    parser.add_argument("--anchor", type=Path, help="pytorch-maml-rl folder (see anchor.py)")
    parser.add_argument("--rounds", type=int, default=2, help="side-by-side rounds")
    parser.add_argument("--out", default="benchmarks/results/meta_iteration.json")
    args = parser.parse_args()
    names = [n for n in NAMES if not args.only or n in args.only.split(",")]
    results = []
    for device in args.devices.split(","):
        for name in names:
            iterations = args.cheetah_iterations if name.startswith("cheetah") else args.iterations
            print(f"running {name} on {device} ...", flush=True)
            results.append(in_fresh_process(name, iterations, device))
    if args.anchor:
        print("running pytorch-maml-rl beside metarl ...", flush=True)
        results.append(side_by_side(args.anchor, args.rounds, args.iterations))
    print_table(results)
    output = {
        "benchmark": "meta_iteration",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "torch": torch.__version__,
        "mujoco": mujoco.__version__,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(output, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
