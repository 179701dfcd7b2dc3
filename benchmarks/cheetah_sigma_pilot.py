"""Would HalfCheetah meta-learn faster with exploration sigma 0.37 (as Ant) than with 1?

A pilot, not a result: it trains the first iterations of the committed HalfCheetah
MAML run again (its config.yaml: same seed, tasks, budget per iteration) with only
`init_log_std` changed, and compares the two runs iteration by iteration over the
same iterations. Returns are not comparable across sigmas (the control cost of the
noise changes with sigma: -0.05 * |clipped action|^2 per step), so the comparison is
of the forward term (`reward_forward`, per episode): before adaptation, after the
inner step, and the inner step's gain (after - before), in blocks of 10 iterations
and paired over all iterations (mean difference ± 95% CI, t over iterations).

    python benchmarks/cheetah_sigma_pilot.py [--reference benchmarks/runs/halfcheetah_dir]
        [--iterations 30] [--init-log-std -1.0] [--run-dir runs/cheetah_sigma_pilot]
        [-o benchmarks/results/cheetah_sigma_pilot.json]

The pilot run (in --run-dir, not committed) resumes if it exists.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from speed import machine

from metarl.evaluation import mean_and_ci95
from metarl.metrics import read_rows

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 10
METRICS = ("reward_forward_pre", "reward_forward_post_1", "reward_ctrl_pre", "log_std")
COMPARED = ("reward_forward_pre", "reward_forward_post_1", "forward_gain", "reward_ctrl_pre")


def read(run_dir: Path, iterations: int) -> dict[str, np.ndarray]:
    """METRICS of iterations 0..iterations-1, and the inner step's forward_gain."""
    _, rows = read_rows(run_dir / "metrics.csv")
    rows = [r for r in rows if int(r["iteration"]) < iterations]
    if len(rows) < iterations:
        raise SystemExit(f"{run_dir}: {len(rows)} of {iterations} iterations in metrics.csv")
    values = {c: np.array([float(r[c]) for r in rows]) for c in METRICS}
    values["forward_gain"] = values["reward_forward_post_1"] - values["reward_forward_pre"]
    return values


def pilot_minus_reference(pilot: dict, reference: dict) -> dict[str, tuple[float, float]]:
    """Per COMPARED column: mean and 95% CI half-width of pilot - reference, paired."""
    return {c: tuple(map(float, mean_and_ci95(pilot[c] - reference[c]))) for c in COMPARED}


def pilot_command(config: dict, run_dir: Path, iterations: int, changes: dict) -> list[str]:
    """`metarl train` that starts (from the reference's `config` with `changes`) or resumes
    the pilot run in run_dir up to `iterations`; a new run's config is written beside it."""
    metarl = [sys.executable, "-m", "metarl.cli", "train", "--no-progress"]
    if (run_dir / "checkpoint.pt").exists():
        return [*metarl, "--resume", str(run_dir), f"--set=iterations={iterations}"]
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    pilot_config = run_dir.parent / f"{run_dir.name}.yaml"
    pilot = {**config, "iterations": iterations, **changes}
    pilot_config.write_text(yaml.safe_dump(pilot, sort_keys=False))
    return [*metarl, str(pilot_config), "--run-dir", str(run_dir)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=ROOT / "benchmarks/runs/halfcheetah_dir")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--init-log-std", type=float, default=-1.0)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs/cheetah_sigma_pilot")
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    if args.iterations < BLOCK:
        raise SystemExit(f"--iterations must be at least {BLOCK}")

    args.reference = args.reference.resolve()
    config = yaml.safe_load((args.reference / "config.yaml").read_text())
    changes = {"init_log_std": args.init_log_std}
    command = pilot_command(config, args.run_dir, args.iterations, changes)
    subprocess.run(command, check=True, cwd=ROOT)
    reference_name = f"init_log_std {config['init_log_std']:g} (committed run)"
    runs = {
        reference_name: read(args.reference, args.iterations),
        f"init_log_std {args.init_log_std:g} (pilot)": read(args.run_dir, args.iterations),
    }
    blocks = range(0, args.iterations, BLOCK)
    result = {
        "reference": args.reference.relative_to(ROOT).as_posix()
        if args.reference.is_relative_to(ROOT)
        else str(args.reference),
        "iterations": args.iterations,
        "machine": machine(),
        "block_means": {},
        "pilot_minus_reference": {},
    }
    for name, values in runs.items():
        print(name)
        result["block_means"][name] = {}
        for column, series in values.items():
            means = [float(series[i : i + BLOCK].mean()) for i in blocks]
            result["block_means"][name][column] = means
            print(f"  {column:22s}", " ".join(f"{m:8.2f}" for m in means))
    (_, reference), (_, pilot) = runs.items()
    print(f"pilot - reference, paired over iterations 0-{args.iterations - 1} (mean ± 95% CI):")
    for column, (mean, half) in pilot_minus_reference(pilot, reference).items():
        result["pilot_minus_reference"][column] = {"mean": mean, "ci95": half}
        print(f"  {column:22s} {mean:+8.2f} ± {half:.2f}")
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
