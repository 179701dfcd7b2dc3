"""Env steps/s of the samplers against the raw physics of 1 and 2 plain processes.

For HalfCheetahVel and AntDir (paper shape: 20 / 40 rollouts per task, H = 200,
one inner step, 2x100 ReLU policy; fewer tasks than the paper's 40 so that one
measurement takes seconds), measured alternately in the same run, `--repeats`
rounds; rates are medians over rounds, ratios medians of the ratios within a round:

- local: the LocalSampler in this process;
- local, 2 threads: the same with `physics_threads: 2` (MuJoCo envs): the copies'
  physics over 2 threads of this process, the policy and the rest in one;
- ray-1 / ray-2: the RaySampler with 1 and 2 actors (one local Ray; both pools
  exist side by side, so Ray is started with 5 logical CPUs for the 5 actors of
  all pools; only one pool samples at a time);
- ray-2, 2 threads: the 2-actor pool with torch allowed 2 threads per actor
  instead of 1 (the thread-count choice);
- raw-1 / raw-2: `mujoco.mj_step(model, data, nstep=frame_skip)` with random
  controls in 1 and 2 plain processes at once (benchmarks/env_step_rate.py's
  raw_rate), the machine's physics ceiling; env-1 / env-2: `env.step` with random
  actions, the ceiling of this env implementation.

Navigation2D (no MuJoCo, the paper's whole meta-batch) is measured the same way,
without the raw rate, to choose its default sampler.

Each sampler measurement samples the same `--iterations` meta-batches (tasks and
seeds of iterations 1..n), after a warm-up meta-batch of one task per actor; the
time to build a sampler and sample that first batch (Ray: the actors start) is
reported, pools built one after the other.
Communication overhead per meta-iteration (Ray): the `ray.put` of theta, the
`ray.get` of the results, the bytes returned, and the wall time not spent
computing in the busiest actor (scheduling, transfer, imbalance). Usage:

    python benchmarks/sampler_throughput.py [--repeats 3] [--iterations 2]
        [--out benchmarks/results/sampler_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import mujoco
import ray
import torch
from env_step_rate import env_rate, raw_rate

import metarl_envs
from metarl.config import TrainConfig
from metarl.config_validation import config_from_dict
from metarl.experiment import build_policy, iteration_tasks, sampler_settings
from metarl.policies import policy_params
from metarl.runtime import keep_freed_memory, set_torch_threads
from metarl.sampling.local import LocalSampler
from metarl.sampling.ray_sampler import RayOptions, RaySampler

ENVS = {  # meta-batch shapes
    "HalfCheetahVel": dict(env="metarl/HalfCheetahVel-v0", meta_batch_size=8, rollouts_per_task=20),
    "AntDir": dict(env="metarl/AntDir-v0", meta_batch_size=4, rollouts_per_task=40),
    # the paper's whole meta-batch: it takes a fraction of a second; no MuJoCo, no raw rate
    "Navigation2D": dict(env="metarl/Navigation2D-v0", meta_batch_size=20, rollouts_per_task=20),
}


RATIOS = [
    ("ray-2", "ray-1"),
    ("ray-2", "raw-2"),
    ("ray-2", "env-2"),
    ("ray-1", "local"),
    ("ray-2", "local"),
    ("local", "raw-1"),
    ("local, 2 threads", "raw-2"),
    ("local, 2 threads", "local"),
    ("local, 2 threads", "ray-2"),
    ("env-1", "raw-1"),
    ("ray-2, 2 threads", "ray-2"),
]


def ratio(runs: dict[str, list], a: str, b: str) -> float:
    """Median over rounds of a / b measured in the same round (pairs close in time)."""
    return statistics.median(x["steps_per_s"] / y["steps_per_s"] for x, y in zip(runs[a], runs[b]))


def measure(sampler, config, policy, iterations: int) -> dict:
    """Steps/s over the meta-batches of iterations 1..n, and Ray's per-iteration overheads."""
    params = policy_params(policy)
    steps, seconds, overheads = 0, 0.0, []
    for iteration in range(1, iterations + 1):
        tasks = iteration_tasks(config, iteration)
        start = time.perf_counter()
        batch = sampler.sample(params, tasks, iteration)
        seconds += time.perf_counter() - start
        steps += batch.env_steps
        stats = getattr(sampler, "last_stats", None)
        if stats is not None:
            overheads.append(
                {
                    "put_ms": 1e3 * stats.put_s,
                    "get_ms": 1e3 * stats.get_s,
                    "result_mb": stats.result_bytes / 2**20,
                    "not_computing_ms": 1e3 * (stats.wall_s - max(stats.busy_s.values())),
                    "chunks": stats.chunks,
                }
            )
    return {"steps_per_s": steps / seconds, "steps": steps, "overheads": overheads}


def warm_up(sampler, config, policy, workers: int) -> None:
    """One small meta-batch: starts the actors (imports, envs) before anything is timed."""
    tasks = iteration_tasks(config, 0)[: max(1, workers)]
    sampler.sample(policy_params(policy), tasks, 0)


def parallel(function, env_id: str, seconds: float, processes: int, pool) -> float:
    """Summed rate of `processes` plain processes running `function` at the same time."""
    return sum(pool.starmap(function, [(env_id, seconds)] * processes))


def bench_env(name: str, values: dict, args, pool) -> dict:
    config = config_from_dict(TrainConfig, {**values, "seed": 0, "hidden_sizes": [100, 100]})
    policy = build_policy(config)
    settings = sampler_settings(config)
    pools = {
        "local": lambda: LocalSampler(settings, policy, config.num_envs),
        "ray-1": lambda: RaySampler(settings, policy, RayOptions(num_workers=1)),
        "ray-2": lambda: RaySampler(settings, policy, RayOptions(num_workers=2)),
        "ray-2, 2 threads": lambda: RaySampler(
            settings, policy, RayOptions(num_workers=2, actor_threads=2)
        ),
    }
    if config.env in metarl_envs.PHYSICS_THREADS_ENV_IDS:
        pools["local, 2 threads"] = lambda: LocalSampler(settings, policy, config.num_envs, 2)
    samplers, start_s = {}, {}
    for key, make in pools.items():  # one after the other: each start is timed alone
        clock = time.perf_counter()
        samplers[key] = make()
        warm_up(samplers[key], config, policy, getattr(samplers[key], "num_workers", 1))
        start_s[key] = time.perf_counter() - clock
    kinds = [("raw", raw_rate), ("env", env_rate)]
    if "Navigation" in config.env:  # no MuJoCo model: no raw physics rate
        kinds = kinds[1:]
    references = [f"{kind}-{n}" for kind, _ in kinds for n in (1, 2)]
    runs: dict[str, list] = {key: [] for key in [*samplers, *references]}
    loads = []
    for _ in range(args.repeats):
        loads.append(os.getloadavg()[0])
        for key, sampler in samplers.items():
            runs[key].append(measure(sampler, config, policy, args.iterations))
            print(f"  {name} {key}: {runs[key][-1]['steps_per_s']:.0f} steps/s", flush=True)
        for processes in (1, 2):
            for kind, function in kinds:
                rate = parallel(function, config.env, args.seconds, processes, pool)
                runs[f"{kind}-{processes}"].append({"steps_per_s": rate})
    for sampler in samplers.values():
        sampler.close()
    rates = {key: statistics.median(r["steps_per_s"] for r in rs) for key, rs in runs.items()}
    ray_overheads = [o for r in runs["ray-2"] for o in r["overheads"]]
    overhead = {k: statistics.median(o[k] for o in ray_overheads) for k in ray_overheads[0]}
    return {
        "env": config.env,
        "meta_batch": {
            "tasks": config.meta_batch_size,
            "rollouts_per_task": config.rollouts_per_task,
            "horizon": settings.horizon,
            "env_steps": runs["local"][0]["steps"] // args.iterations,
        },
        "steps_per_s": rates,
        "ratios": {f"{a} / {b}": ratio(runs, a, b) for a, b in RATIOS if a in runs and b in runs},
        "ray-2 overhead per meta-iteration": overhead,
        "start_s": start_s,  # construction + a first small meta-batch (Ray: actors start)
        "runs": {key: [r["steps_per_s"] for r in rs] for key, rs in runs.items()},
        "load_average_1m_per_round": loads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds")
    parser.add_argument("--iterations", type=int, default=2, help="meta-batches per measurement")
    parser.add_argument("--seconds", type=float, default=2.0, help="per raw/env measurement")
    parser.add_argument("--envs", default=",".join(ENVS), help="comma-separated subset")
    parser.add_argument("--out", default="benchmarks/results/sampler_throughput.json")
    args = parser.parse_args()

    keep_freed_memory()  # the driver's process settings are the trainer's
    set_torch_threads(0)  # one thread per core, the trainer's default
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()
    temp_dir = tempfile.mkdtemp(prefix="metarl-bench-ray-")
    clock = time.perf_counter()
    ray.init(
        address="local",
        num_cpus=5,  # logical: the 1 + 2 + 2 actors of the three pools exist side by side
        include_dashboard=False,
        _temp_dir=temp_dir,
        log_to_driver=False,
        logging_level="WARNING",
    )
    ray_init_s = time.perf_counter() - clock
    rows = []
    try:
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            pool.starmap(raw_rate, [("metarl/HalfCheetahVel-v0", 0.1)] * 2)  # imports
            for name in args.envs.split(","):
                rows.append(bench_env(name, ENVS[name], args, pool))
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    result = {
        "benchmark": "sampler_throughput",
        "machine": {
            "cpus": cores,
            "python": platform.python_version(),
            "load_average_1m_before_after": [load_before[0], os.getloadavg()[0]],
        },
        "versions": {
            "ray": ray.__version__,
            "torch": torch.__version__,
            "mujoco": mujoco.__version__,
        },
        "ray_init_s": ray_init_s,
        "repeats": args.repeats,
        "iterations_per_measurement": args.iterations,
        "seconds_per_raw_measurement": args.seconds,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"wrote {args.out}")


def print_table(result: dict) -> None:
    rows = result["rows"]
    names = [row["env"].split("/")[1] for row in rows]

    def table(title: str, key: str, fmt: str) -> None:
        print(f"\n{title:34s}" + "".join(f"{name:>18s}" for name in names))
        items = list(dict.fromkeys(item for row in rows for item in row[key]))
        for item in items:
            values = [row[key].get(item) for row in rows]
            cells = [f"{v:18{fmt}}" if v is not None else f"{'-':>18s}" for v in values]
            print(f"{item:34s}" + "".join(cells))

    table("env steps/s", "steps_per_s", ",.0f")
    table("ratio", "ratios", ".2f")
    table("ray-2, per meta-iteration", "ray-2 overhead per meta-iteration", ".2f")
    table("start + first batch, s", "start_s", ".2f")
    print(f"\nray.init: {result['ray_init_s']:.1f} s")
    load, cores = result["machine"]["load_average_1m_before_after"], result["machine"]["cpus"]
    print(f"\nload average (1 min) before / after: {load[0]:.2f} / {load[1]:.2f}, {cores} cores")


if __name__ == "__main__":
    main()
