"""Does `hvp_subsample: 0.25` meta-learn as fast as full-data Hessian-vector products?

The issue allows the subsample "if, on the same seed, its first iterations learn as the
full Hessian-vector products do". This pilot trains the committed HalfCheetah MAML run's
config (same seed, tasks and rollout seeds per iteration) twice from scratch, with
`hvp_subsample` 1.0 and with the committed 0.25, side by side, and compares the two runs
iteration by iteration: the post-adaptation return and the forward term (`reward_forward`,
per episode) before and after the inner step, and the line-search tries. Differences are
full - subsampled, mean ± 95% CI (t over iterations) in blocks of 10 and over the last 20
common iterations.

That interval treats the iterations of one pair of runs as independent samples, and it
is not a run-to-run interval: two runs of the same settings drift apart after their first
steps (the meta-step amplifies rounding, tests/test_device_rl.py). `--control RUN` gives the
yardstick: a run of the subsampled run's settings that differs from it only in rounding
(for example the committed run, trained on another machine), compared with it the same
way. A settings effect smaller than control - sub25 is not shown by the pilot.

    python benchmarks/hvp_subsample_pilot.py [--reference benchmarks/runs/halfcheetah_dir]
        [--iterations 80] [--run-dir runs/hvp_subsample_pilot] [--set device=cuda ...]
        [--control benchmarks/runs/halfcheetah_dir] [--no-train [--trained-on TEXT]]
        [-o benchmarks/results/hvp_subsample_exact/pilot.json]

Runs in --run-dir/full and --run-dir/sub25 resume if they exist; `--no-train` compares
what they hold (a folder with a metrics.csv is enough).

`--fork CHECKPOINT` continues a run from one of its checkpoints instead of starting from
scratch (a committed run at an earlier iteration: `git show REV:PATH > FILE`): the runs
resume from it with their `hvp_subsample`, and the comparison starts at its iteration.
`--sub25 RUN` takes an existing run with the subsampled settings as sub25 instead of
training one, for example the reference itself when it continued from that checkpoint
(`--full RUN` likewise, for example a runner group's fork with full-data products):

    python benchmarks/hvp_subsample_pilot.py --reference benchmarks/runs/NAME \
        --fork CHECKPOINT_300 --iterations 400 --sub25 benchmarks/runs/NAME
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
import yaml
from cheetah_sigma_pilot import pilot_command  # benchmarks/ is first on sys.path
from speed import machine

from metarl.checkpoints import load_checkpoint
from metarl.evaluation import mean_and_ci95
from metarl.metrics import read_rows
from metarl.resuming import fork_run

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 10
RUNS = {"full": 1.0, "sub25": 0.25}
COLUMNS = ("return_post_1", "reward_forward_pre", "reward_forward_post_1", "line_search_steps")


def read(run_dir: Path, start: int = 0) -> dict[str, np.ndarray]:
    """COLUMNS of the iterations from `start` on in run_dir/metrics.csv (in order)."""
    _, rows = read_rows(run_dir / "metrics.csv")
    rows = [r for r in rows if int(r["iteration"]) >= start]
    if [int(r["iteration"]) for r in rows] != list(range(start, start + len(rows))):
        raise SystemExit(
            f"{run_dir}: metrics.csv does not hold iterations {start}, {start + 1}, ... in order"
        )
    return {c: np.array([float(r[c]) for r in rows]) for c in COLUMNS}


def fork(checkpoint: Path, run_dir: Path, subsample: float) -> int:
    """Make run_dir a run that continues `checkpoint` with `hvp_subsample: subsample` (unless
    run_dir exists already); the checkpoint's iteration, where the comparison starts."""
    if run_dir.exists():
        return int(load_checkpoint(checkpoint)["state"]["iteration"])
    return fork_run(checkpoint, run_dir, {"hvp_subsample": subsample})


def paired(full: np.ndarray, subsampled: np.ndarray) -> dict[str, float]:
    mean, half = mean_and_ci95(full - subsampled)
    return {"mean": float(mean), "ci95": float(half)}


def compare(first: dict, second: dict, names: tuple[str, str], start: int = 0) -> dict:
    """Block means of each run and first - second, per block and over the last 20 iterations.

    The runs' arrays begin at iteration `start` (which only names the blocks)."""
    n = min(len(first[COLUMNS[0]]), len(second[COLUMNS[0]]))
    if n < 2 * BLOCK:
        raise SystemExit(f"the runs have {n} common iterations; the comparison needs {2 * BLOCK}")
    blocks = [(a, min(a + BLOCK, n)) for a in range(0, n, BLOCK)]
    labels = [f"{start + a}-{start + b - 1}" for a, b in blocks]
    result: dict = {"common_iterations": n, "first_iteration": start, "blocks": labels}
    difference = f"{names[0]}_minus_{names[1]}"
    for column in COLUMNS:
        a, b = first[column][:n], second[column][:n]
        result[column] = {
            f"{names[0]}_block_means": [float(a[s:e].mean()) for s, e in blocks],
            f"{names[1]}_block_means": [float(b[s:e].mean()) for s, e in blocks],
            f"{difference}_blocks": [paired(a[s:e], b[s:e]) for s, e in blocks],
            f"{difference}_last_{2 * BLOCK}": paired(a[n - 2 * BLOCK :], b[n - 2 * BLOCK :]),
            f"{difference}_all": paired(a, b),
        }
    return result


def show(result: dict, names: tuple[str, str]) -> None:
    difference = f"{names[0]}_minus_{names[1]}"
    print(f"{names[0]} - {names[1]}, {result['common_iterations']} common iterations")
    print(f"{'column':22s}" + "".join(f"{b:>16s}" for b in result["blocks"]) + "     last 20")
    for column in COLUMNS:
        cells = [*result[column][f"{difference}_blocks"], result[column][f"{difference}_last_20"]]
        print(f"{column:22s}" + "".join(f"{c['mean']:+9.2f} ±{c['ci95']:5.2f}" for c in cells))


def train(
    config: dict, run_dir: Path, iterations: int, settings: list[str], runs: dict[str, float]
) -> None:
    """Start or resume `runs` (name: hvp_subsample), side by side, up to `iterations`."""
    extra = [f"--set={s}" for s in settings]
    processes = [
        subprocess.Popen(
            [
                *pilot_command(config, run_dir / name, iterations, {"hvp_subsample": subsample}),
                *extra,
            ],
            cwd=ROOT,
        )
        for name, subsample in runs.items()
    ]
    if any(p.wait() != 0 for p in processes):
        raise SystemExit("a pilot run failed (its output is above)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=ROOT / "benchmarks/runs/halfcheetah_dir")
    parser.add_argument("--iterations", type=int, default=80)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs/hvp_subsample_pilot")
    parser.add_argument("--set", action="append", default=[], help="run setting for both runs")
    parser.add_argument("--control", type=Path, help="a run of sub25's settings (see above)")
    parser.add_argument("--no-train", action="store_true", help="compare the runs as they are")
    parser.add_argument("--fork", type=Path, help="continue from this checkpoint (see above)")
    parser.add_argument("--sub25", type=Path, help="an existing run to compare as sub25")
    parser.add_argument("--full", type=Path, help="an existing run to compare as full")
    parser.add_argument("--trained-on", help="with --no-train: where and how the runs were trained")
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    if args.trained_on and not args.no_train:
        raise SystemExit("--trained-on describes runs trained elsewhere: use it with --no-train")
    config = yaml.safe_load((args.reference / "config.yaml").read_text())
    given = {"full": args.full, "sub25": args.sub25}  # existing runs, not trained here
    runs = {n: s for n, s in RUNS.items() if not given[n]}
    start = 0  # the comparison's first iteration: the fork's
    if args.fork:
        start = int(load_checkpoint(args.fork)["state"]["iteration"])
        for name, subsample in runs.items():
            fork(args.fork, args.run_dir / name, subsample)
    if not args.no_train:
        train(config, args.run_dir, args.iterations, args.set, runs)
    subsampled = read(args.sub25 or args.run_dir / "sub25", start)
    full = read(args.full or args.run_dir / "full", start)
    pairs = {"full_minus_sub25": (full, ("full", "sub25"))}
    if args.control:
        pairs["control_minus_sub25"] = (read(args.control, start), ("control", "sub25"))
    result = {
        "reference": str(args.reference),
        "fork": str(args.fork) if args.fork else None,
        "full": str(args.full or args.run_dir / "full"),
        "sub25": str(args.sub25 or args.run_dir / "sub25"),
        "control": str(args.control) if args.control else None,
        "settings": args.set,
        "trained_on": args.trained_on or machine(),
    }
    for key, (run, names) in pairs.items():
        result[key] = compare(run, subsampled, names, start)
        show(result[key], names)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
