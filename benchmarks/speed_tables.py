"""The README's speed tables (markdown) from one block of benchmarks/speed.py.

`tables(results)` takes the block (`speed_block`) and the JSON of env_step_rate,
meta_iteration and sampler_throughput, and returns {marker name: markdown}. Every
figure is computed here from what the benchmarks measured; targets are the speed
issue's, judged on the median with each round shown beside it.
"""

from __future__ import annotations

import statistics

SCENARIOS = {
    "nav-relu100": "Navigation2D, 2x100 ReLU (paper)",
    "nav-relu100-sub25": "same, `hvp_subsample: 0.25`",
    "nav-tanh64": "Navigation2D, 2x64 tanh",
    "nav-tanh64-sub25": "same, `hvp_subsample: 0.25`",
    "cheetah": "HalfCheetahVel, 2x100 ReLU",
    "cheetah-sub25": "same, `hvp_subsample: 0.25`",
}
SAMPLERS = {
    "local": "local sampler",
    "local, 2 threads": "local sampler, `physics_threads: 2`",
    "ray-1": "Ray, 1 actor",
    "ray-2": "Ray, 2 actors",
    "ray-2, 2 threads": "Ray, 2 actors, 2 torch threads each",
    "raw-1": "raw `mj_step`, 1 process",
    "raw-2": "raw `mj_step`, 2 processes",
    "env-1": "`env.step`, 1 process",
    "env-2": "`env.step`, 2 processes",
}
# (env, ratio, target) of the speed issue's sampling targets
SAMPLING_TARGETS = [
    ("HalfCheetahVel", "ray-2 / raw-2", 0.8),
    ("HalfCheetahVel", "local / raw-1", 0.8),
    ("AntDir", "ray-2 / raw-2", 0.9),
]
NAV_RATIO_TARGET, UPDATE_FLOOR_TARGET, UPDATE_SAMPLING_TARGET = 9.0, 2.0, 0.5


def env_name(env_id: str) -> str:
    return env_id.split("/")[-1].removesuffix("-v0")


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def verdict(value: float, target: float, at_least: bool) -> str:
    return "met" if (value >= target if at_least else value <= target) else "missed"


def block_line(results: dict) -> str:
    block = results["speed_block"]
    machine, runs = block["machine"], block["benchmarks"]
    spans = ", ".join(
        f"{r['name']} {r['started'][11:16]}-{r['ended'][11:16]} (load {r['load_1m_before']:.1f} "
        f"→ {r['load_1m_after']:.1f})"
        for r in runs
    )
    return (
        f"Measured in one run of `python benchmarks/speed.py run`, on {machine['cpu']} "
        f"({machine['cpus']} CPUs, {machine['memory_gib']:g} GiB, Python {machine['python']}), "
        f"{runs[0]['started'][:16]} to {runs[-1]['ended'][11:16]} UTC, with "
        f"{block['cpu_busy_before']:.0%} of the CPUs busy before it started. One after the "
        f"other: {spans}."
    )


def env_table(results: dict) -> str:
    rows = []
    for row in results["env_step_rate"]["rows"]:
        raw = row.get("raw_mj_step_env_steps_per_s")
        rows.append(
            [
                env_name(row["env"]),
                f"{row['env_steps_per_s']:,.0f}",
                f"{raw:,.0f}" if raw else "–",
                f"{row['ratio_env_to_raw']:.2f}" if raw else "–",
            ]
        )
    return markdown(["env", "`env.step`/s", "raw physics steps/s", "env / raw"], rows)


def scenario_results(results: dict) -> list[dict]:
    return [r for r in results["meta_iteration"]["results"] if r["scenario"] in SCENARIOS]


def meta_iteration_table(results: dict) -> str:
    scenarios = scenario_results(results)
    devices = {r["device"] for r in scenarios}
    rows = []
    for r in scenarios:
        floor = f"{r['update_over_floor']:.2f}" if "update_over_floor" in r else "–"
        rows.append(
            [SCENARIOS[r["scenario"]]]
            + ([r.get("gpu", r["device"])] if len(devices) > 1 else [])
            + [f"{r[k]:.2f}" for k in ("iteration_s", "sampling_s", "update_s")]
            + [f"{r['conjugate_gradient_s']:.2f}", floor, f"{r['peak_memory_mb']:,.0f}"]
        )
    header = ["scenario", *(["device"] if len(devices) > 1 else [])]
    header += ["iteration s", "sampling s", "update s", "CG s", "update / floor", "peak MB"]
    return markdown(header, rows)


def by_scenario(results: dict, name: str, device: str = "cpu") -> dict | None:
    return next(
        (r for r in scenario_results(results) if r["scenario"] == name and r["device"] == device),
        None,
    )


def anchor_rows(results: dict) -> list[list[str]]:
    """pytorch-maml-rl / metarl, side by side; and the best ratio metarl's floor allows."""
    anchor = next(
        (r for r in results["meta_iteration"]["results"] if r["scenario"] == "pytorch-maml-rl"),
        None,
    )
    if anchor is None:
        return [["pytorch-maml-rl / metarl, Navigation2D 2x64 tanh", "≥ 9x", "not run", ""]]
    ratio = statistics.median(r["ratio"] for r in anchor["rounds"])
    pairs = ", ".join(
        f"{r['pytorch_maml_rl_s']:.2f} s / {r['metarl_s']:.2f} s" for r in anchor["rounds"]
    )
    anchor_s = statistics.median(r["pytorch_maml_rl_s"] for r in anchor["rounds"])
    rows = [
        [
            "pytorch-maml-rl / metarl, Navigation2D 2x64 tanh, side by side",
            f"≥ {NAV_RATIO_TARGET:g}x",
            f"{ratio:.1f}x ({pairs})",
            verdict(ratio, NAV_RATIO_TARGET, at_least=True),
        ]
    ]
    sub = by_scenario(results, "nav-tanh64-sub25")
    if sub:
        rows.append(
            ["same, metarl with `hvp_subsample: 0.25` (scenario above)", "–",
             f"{anchor_s / sub['iteration_s']:.1f}x "
             f"({anchor_s:.2f} s / {sub['iteration_s']:.2f} s)", ""]
        )  # fmt: skip
    full = by_scenario(results, "nav-tanh64")
    if full and "update_floor_s" in full:
        best = full["sampling_s"] + full["update_floor_s"]
        rows.append(
            ["same, if metarl's update ran at its arithmetic floor (sampling + floor)", "–",
             f"{anchor_s / best:.1f}x ({anchor_s:.2f} s / ({full['sampling_s']:.2f} s + "
             f"{full['update_floor_s']:.2f} s))", "the bound"]
        )  # fmt: skip
    return rows


def targets_table(results: dict) -> str:
    rows = anchor_rows(results)
    cheetah = by_scenario(results, "cheetah")
    if cheetah and "update_over_floor" in cheetah:
        value = cheetah["update_over_floor"]
        rows.append(
            ["HalfCheetahVel update / its arithmetic floor, full-data HVPs",
             f"≤ {UPDATE_FLOOR_TARGET:g}x",
             f"{value:.2f}x ({cheetah['update_s']:.2f} s / {cheetah['update_floor_s']:.2f} s: "
             f"{cheetah['update_gflop']:.0f} GFLOP at {cheetah['matmul_gflop_per_s']:.1f} GFLOP/s)",
             verdict(value, UPDATE_FLOOR_TARGET, at_least=False)]
        )  # fmt: skip
    sub = by_scenario(results, "cheetah-sub25")
    if sub:
        value = sub["update_s"] / sub["sampling_s"]
        rows.append(
            ["HalfCheetahVel update / sampling, `hvp_subsample: 0.25`",
             f"≤ {UPDATE_SAMPLING_TARGET:g}", f"{value:.2f}",
             verdict(value, UPDATE_SAMPLING_TARGET, at_least=False)]
        )  # fmt: skip
    for env, key, target in SAMPLING_TARGETS:
        row = sampler_row(results, env)
        if row is None or key not in row["ratios"]:
            continue
        rounds = ", ".join(f"{v:.2f}" for v in round_ratios(row, key))
        rows.append(
            [f"{env} sampling, {ratio_label(key)}", f"≥ {target:g}",
             f"{row['ratios'][key]:.2f} (rounds: {rounds})",
             verdict(row["ratios"][key], target, at_least=True)]
        )  # fmt: skip
    return markdown(["measure", "target", "measured", ""], rows)


def profile_lines(results: dict) -> str:
    """What bounds each update: the profile's split of its time against the floor."""
    lines = []
    for r in scenario_results(results):
        if "profile_matmul_share" not in r:
            continue
        top = ", ".join(
            f"`{o['op'].removeprefix('aten::')}` {o['self_s'] / r['profile_ops_self_s']:.0%}"
            for o in r["profile_top_ops"]
        )
        lines.append(
            f"- `{r['scenario']}` ({r['device']}): update "
            f"{r['update_s']:.2f} s = {r['update_over_floor']:.2f}x its floor of "
            f"{r['update_floor_s']:.2f} s ({r['update_gflop']:.0f} GFLOP at "
            f"{r['matmul_gflop_per_s']:.1f} GFLOP/s). Matrix products: "
            f"{r['profile_matmul_share']:.0%} of the op time, at "
            f"{r['products_gflop_per_s']:.1f} GFLOP/s ({r['products_over_floor']:.2f}x the "
            f"floor); everything else {r['update_over_products']:.2f}x on top. Top ops: {top}."
        )
    return "\n".join(lines) or "- no profile in this block"


def sampler_row(results: dict, env: str) -> dict | None:
    rows = results["sampler_throughput"]["rows"]
    return next((r for r in rows if env_name(r["env"]) == env), None)


def round_ratios(row: dict, key: str) -> list[float]:
    """The ratio `a / b` within each round (the runs of a and b alternate in a round)."""
    a, b = (part.strip() for part in key.split(" / "))
    return [x / y for x, y in zip(row["runs"][a], row["runs"][b])]


def ratio_label(key: str) -> str:
    a, b = (part.strip() for part in key.split(" / "))
    return f"{SAMPLERS.get(a, a)} / {SAMPLERS.get(b, b)}"


def sampler_tables(results: dict) -> str:
    rows = results["sampler_throughput"]["rows"]
    names = [env_name(r["env"]) for r in rows]
    keys = list(dict.fromkeys(k for r in rows for k in r["steps_per_s"]))
    rates = [
        [SAMPLERS.get(k, k)]
        + [f"{r['steps_per_s'][k]:,.0f}" if k in r["steps_per_s"] else "–" for r in rows]
        for k in keys
    ]
    ratio_keys = list(dict.fromkeys(k for r in rows for k in r["ratios"]))
    ratios = []
    for key in ratio_keys:
        cells = []
        for r in rows:
            if key not in r["ratios"]:
                cells.append("–")
                continue
            rounds = ", ".join(f"{v:.2f}" for v in round_ratios(r, key))
            cells.append(f"{r['ratios'][key]:.2f} ({rounds})")
        ratios.append([ratio_label(key), *cells])
    shapes = "; ".join(
        f"{name} {r['meta_batch']['tasks']} tasks x {r['meta_batch']['rollouts_per_task']} "
        f"rollouts x {r['meta_batch']['horizon']} steps"
        for name, r in zip(names, rows)
    )
    return "\n\n".join(
        [
            f"Meta-batches: {shapes}. Rates: medians of "
            f"{results['sampler_throughput']['repeats']} rounds; ratios: medians of the "
            "ratios within a round, each round's in brackets.",
            markdown(["env steps/s", *names], rates),
            markdown(["ratio", *names], ratios),
        ]
    )


def tables(results: dict) -> dict[str, str]:
    return {
        "block": block_line(results),
        "env": env_table(results),
        "meta-iteration": meta_iteration_table(results),
        "targets": targets_table(results),
        "profiles": profile_lines(results),
        "sampler": sampler_tables(results),
    }
