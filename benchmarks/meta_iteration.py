"""Whole MAML-TRPO meta-iterations and their phases, at the paper's scale.

Scenarios (each in a fresh process, so its peak memory is its own):

- nav-relu100 / nav-tanh64: Navigation2D, 20 tasks x 20 rollouts x 100 steps, one inner
  step, second order, 10 CG iterations; the paper's 2x100 ReLU network and 2x64 tanh.
  Each with full-data Hessian-vector products and with hvp_subsample 0.25, whose HVP
  error against the full-data product (same theta, same data, random directions) and
  whose step direction's cosine with the full-data one are reported.
- cheetah: HalfCheetahVel, 40 tasks x 20 rollouts x 200 steps (2x100 ReLU), with the raw
  physics rate (`mujoco.mj_step` on the same model, one core) measured in the same
  process and the sampler's throughput as a ratio to it.
- ablations (nav-tanh64 data): the ways to be fast, each timed against its alternative
  on the same data: one-sided vs central finite-difference vs exact (double backward)
  Hessian-vector products; all tasks batched vs a Python loop over tasks for the
  meta-gradient; packed valid steps vs padded episodes.

Times are medians over the measured iterations (after one warm-up iteration).
Usage:

    python benchmarks/meta_iteration.py [--iterations 5] [--cheetah-iterations 2]
        [--only nav-tanh64,...] [--out benchmarks/results/meta_iteration.json]
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

import gymnasium as gym
import mujoco
import numpy as np
import torch
from env_step_rate import raw_rate  # benchmarks/ is the script's folder, first on sys.path

from metarl.config import TrainConfig
from metarl.config_validation import config_from_dict
from metarl.episodes import step_batch
from metarl.maml_trpo import MetaBatchSteps, MetaObjective, hessian_vector_product, meta_step
from metarl.policies import policy_params
from metarl.runtime import keep_freed_memory, set_torch_threads
from metarl.trainer import (
    build_policy,
    iteration_tasks,
    loss_steps,
    make_sampler,
    meta_step_settings,
    stream_rng,
)
from metarl.trpo import conjugate_gradient, flatten

PYTORCH_MAML_RL_SECONDS = 4.6  # the figure for pytorch-maml-rl on this machine

NAV = dict(env="metarl/Navigation2D-v0", meta_batch_size=20, rollouts_per_task=20)
CHEETAH = dict(env="metarl/HalfCheetahVel-v0", meta_batch_size=40, rollouts_per_task=20)
SCENARIOS = {
    "nav-relu100": dict(NAV, hidden_sizes=[100, 100], activation="relu"),
    "nav-tanh64": dict(NAV, hidden_sizes=[64, 64], activation="tanh"),
    "cheetah": dict(CHEETAH, hidden_sizes=[100, 100], activation="relu", num_envs=800),
}


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def setup(values: dict):
    config = config_from_dict(TrainConfig, values)
    keep_freed_memory()
    set_torch_threads(config.torch_threads)
    policy = build_policy(config)
    return config, policy, make_sampler(config, policy), gym.make(config.env)


def sample(config: TrainConfig, policy, sampler, task_env, iteration: int):
    tasks = iteration_tasks(task_env, config, iteration)
    return sampler.sample(policy_params(policy), tasks, iteration)


def time_iterations(values: dict, iterations: int) -> dict:
    """Run warm-up + `iterations` meta-iterations as the trainer does; median phase times."""
    config, policy, sampler, task_env = setup(values)
    settings = meta_step_settings(config)
    rows = []
    for iteration in range(iterations + 1):
        start = time.perf_counter()
        meta_batch = sample(config, policy, sampler, task_env, iteration)
        sampling_s = time.perf_counter() - start
        clock = time.perf_counter()
        rng = stream_rng(config.seed, 101, iteration)
        new, stats = meta_step(
            policy, policy_params(policy), loss_steps(meta_batch, config), settings, rng
        )
        with torch.no_grad():
            for name, parameter in policy.named_parameters():
                parameter.copy_(new[name])
        update_s = time.perf_counter() - clock
        row = {
            "iteration_s": time.perf_counter() - start,
            "sampling_s": sampling_s,
            "update_s": update_s,
            **{f"{k}_s": v for k, v in stats.seconds.items()},
            "env_steps_per_s": meta_batch.env_steps / sampling_s,
            "accepted": stats.accepted,
        }
        if iteration > 0:  # the first iteration is the warm-up
            rows.append(row)
    sampler.close()
    median = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "accepted"}
    return {**median, "accepted": sum(r["accepted"] for r in rows), "iterations": len(rows)}


def meta_batch_steps(values: dict):
    """A policy, its MetaObjective inputs and the raw meta-batch after one training iteration."""
    config, policy, sampler, task_env = setup(values)
    meta_batch = sample(config, policy, sampler, task_env, 0)
    sampler.close()
    return config, policy, meta_batch


def objective_after_sampling(values: dict):
    """(config, policy, meta-batch, settings, theta_old, MetaObjective) at the first iteration."""
    config, policy, meta_batch = meta_batch_steps(values)
    settings = meta_step_settings(config)
    like = {n: p.detach() for n, p in policy_params(policy).items()}
    objective = MetaObjective.around(policy, like, loss_steps(meta_batch, config), settings)
    return config, policy, meta_batch, settings, flatten(like), objective


def hvp_subsample_error(values: dict, fraction: float, directions: int = 5) -> dict:
    """Relative error of the subsampled HVP and cosine of the CG step against full data."""
    _, _, _, settings, theta_old, full = objective_after_sampling(values)
    data = full.data
    num_tasks = data.valid.num_tasks
    rng = np.random.default_rng(0)
    errors = []
    generator = torch.Generator().manual_seed(0)
    for _ in range(directions):
        tasks = torch.from_numpy(
            np.sort(rng.choice(num_tasks, round(fraction * num_tasks), replace=False))
        )
        vector = torch.randn(theta_old.shape, generator=generator)
        exact = hessian_vector_product(full, theta_old, settings)(vector)
        sub = hessian_vector_product(full.restricted(tasks), theta_old, settings)(vector)
        errors.append(float((sub - exact).norm() / exact.norm()))
    theta = theta_old.clone().requires_grad_()
    gradient = torch.autograd.grad(full(theta)[0], theta)[0]
    full_step, _, _ = conjugate_gradient(
        hessian_vector_product(full, theta_old, settings), gradient, settings.cg_iters
    )
    sub_step, _, _ = conjugate_gradient(
        hessian_vector_product(full.restricted(tasks), theta_old, settings),
        gradient,
        settings.cg_iters,
    )
    cosine = float(full_step.dot(sub_step) / (full_step.norm() * sub_step.norm()))
    return {"hvp_relative_error": statistics.mean(errors), "step_cosine": cosine}


def best_time(function, repeats: int = 5) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def ablations(values: dict) -> dict:
    config, policy, meta_batch, settings, theta_old, objective = objective_after_sampling(values)
    like = objective.like
    packed = objective.data
    vector = torch.randn(theta_old.shape, generator=torch.Generator().manual_seed(0))
    result = {}
    for method in ("finite_difference", "finite_difference_central", "exact"):
        hvp_settings = settings.__class__(**{**settings.__dict__, "hvp": method})

        def products(s=hvp_settings):  # what CG needs: building the product, then 10 products
            hvp = hessian_vector_product(objective, theta_old, s)
            for _ in range(settings.cg_iters):
                hvp(vector)

        result[f"hvp_{method}_10_products_s"] = best_time(products)

    def gradient_of(objective_for: MetaObjective) -> torch.Tensor:
        theta = theta_old.clone().requires_grad_()
        return torch.autograd.grad(objective_for(theta)[0], theta)[0]

    num_tasks = packed.valid.num_tasks
    singles = [objective.restricted(torch.tensor([i])) for i in range(num_tasks)]
    result["meta_gradient_batched_s"] = best_time(lambda: gradient_of(objective))
    result["meta_gradient_task_loop_s"] = best_time(
        lambda: sum(gradient_of(single) for single in singles)
    )

    def padded_steps(episodes):
        from metarl.baselines import estimate_advantages

        advantages = estimate_advantages(
            episodes, config.gamma, config.gae_lambda, config.normalize_advantages
        )
        return step_batch(episodes, advantages, pack=False)

    padded = MetaBatchSteps(
        [padded_steps(e) for e in meta_batch.train], padded_steps(meta_batch.valid)
    )
    padded_objective = MetaObjective.around(policy, like, padded, settings)
    result["meta_gradient_padded_s"] = best_time(lambda: gradient_of(padded_objective))
    result["valid_step_fraction"] = float(meta_batch.valid.mask.mean())
    return result


def run_scenario(name: str, iterations: int) -> dict:
    """One scenario, in its own process."""
    values = SCENARIOS.get(name, SCENARIOS["nav-tanh64"])
    result: dict = {"scenario": name}
    if name == "ablations":
        result.update(ablations(values))
    elif name.endswith("-sub25"):
        values = dict(SCENARIOS[name.removesuffix("-sub25")], hvp_subsample=0.25)
        result.update(time_iterations(values, iterations))
        result.update(hvp_subsample_error(values, 0.25))
    else:
        result.update(time_iterations(values, iterations))
    if name.startswith("cheetah"):
        raw = raw_rate(values["env"], seconds=3.0)
        result["raw_physics_env_steps_per_s"] = raw
        result["sampler_to_raw_ratio"] = result["env_steps_per_s"] / raw
    result["peak_memory_mb"] = peak_memory_mb()
    return result


def in_fresh_process(name: str, iterations: int) -> dict:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(run_scenario, name, iterations).result()


def print_table(results: list[dict]) -> None:
    header = (
        f"{'scenario':<20}{'iter s':>8}{'sample s':>10}{'update s':>10}{'adapt':>7}"
        f"{'metagrad':>9}{'CG':>7}{'search':>8}{'steps/s':>9}{'peak MB':>9}"
    )
    print(header)
    for r in results:
        if "iteration_s" not in r:
            continue
        print(
            f"{r['scenario']:<20}{r['iteration_s']:>8.2f}{r['sampling_s']:>10.2f}"
            f"{r['update_s']:>10.2f}{r['adaptation_s']:>7.2f}{r['meta_gradient_s']:>9.2f}"
            f"{r['conjugate_gradient_s']:>7.2f}{r['line_search_s']:>8.2f}"
            f"{r['env_steps_per_s']:>9.0f}{r['peak_memory_mb']:>9.0f}"
        )
    for r in results:
        if r["scenario"].startswith("nav"):
            print(
                f"{r['scenario']}: {PYTORCH_MAML_RL_SECONDS / r['iteration_s']:.1f}x faster than "
                f"the {PYTORCH_MAML_RL_SECONDS} s the issue gives for pytorch-maml-rl"
            )
        if "hvp_relative_error" in r:
            print(
                f"{r['scenario']}: subsampled HVP relative error "
                f"{r['hvp_relative_error']:.3f}, CG step cosine {r['step_cosine']:.3f}"
            )
        if "sampler_to_raw_ratio" in r:
            print(
                f"{r['scenario']}: sampler {r['env_steps_per_s']:.0f} env steps/s = "
                f"{r['sampler_to_raw_ratio']:.2f} x raw mj_step "
                f"({r['raw_physics_env_steps_per_s']:.0f}/s, one core)"
            )
        if r["scenario"] == "ablations":
            fd = r["hvp_finite_difference_10_products_s"]
            print(
                f"ablations (10 HVPs): one-sided FD {fd:.3f} s, central "
                f"{r['hvp_finite_difference_central_10_products_s'] / fd:.2f}x, exact "
                f"{r['hvp_exact_10_products_s'] / fd:.2f}x; meta-gradient: task loop "
                f"{r['meta_gradient_task_loop_s'] / r['meta_gradient_batched_s']:.2f}x and "
                f"padded {r['meta_gradient_padded_s'] / r['meta_gradient_batched_s']:.2f}x "
                f"the batched packed {r['meta_gradient_batched_s']:.3f} s "
                f"({r['valid_step_fraction']:.0%} of padded steps valid)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5, help="measured nav iterations")
    parser.add_argument("--cheetah-iterations", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--out", default="benchmarks/results/meta_iteration.json")
    args = parser.parse_args()
    names = [
        "nav-relu100",
        "nav-relu100-sub25",
        "nav-tanh64",
        "nav-tanh64-sub25",
        "ablations",
        "cheetah",
        "cheetah-sub25",
    ]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    results = []
    for name in names:
        iterations = args.cheetah_iterations if name.startswith("cheetah") else args.iterations
        print(f"running {name} ...", flush=True)
        results.append(in_fresh_process(name, iterations))
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
