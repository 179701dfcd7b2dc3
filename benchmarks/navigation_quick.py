"""How many Navigation2D iterations MAML needs to beat the pretrained baseline, and what they cost.

The README's three-minute first experience trains configs/navigation.yaml for N
iterations, trains the pretrained baseline for as many, and evaluates both
(`metarl eval RUN --baselines pretrained`: best.pt of each, 40 held-out tasks,
0-3 steps). This script measures that for several N at once: each run is
extended by `metarl train --resume --set iterations=N` (resume is exact, so the
run at N equals a straight N-iteration run) and its best.pt copied at every N;
then each N is evaluated. It writes benchmarks/results/navigation_quick.json and
prints a table: MAML's and pretrained's return after one step (mean ± 95% CI
over tasks; bold where MAML's interval lies above pretrained's) and the wall time
of each stage.

    python benchmarks/navigation_quick.py [--iterations 5,10,20,30] [--set torch_threads=1]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "navigation.yaml"


def metarl(*args: str) -> float:
    """Run `metarl ARGS` quietly; its wall-clock seconds."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "metarl.cli", *args]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def train_in_stages(run_dir: Path, stages: list[int], overrides: list[str]) -> dict[int, float]:
    """Train to each stage in turn, copying best.pt to run_dir/at_N; training wall s at N."""
    sets = [arg for item in overrides for arg in ("--set", item)]
    walls = {}
    for i, iterations in enumerate(stages):
        if i == 0:
            args = ["train", str(CONFIG), "--run-dir", str(run_dir), *sets]
        else:
            args = ["train", "--resume", str(run_dir)]
        metarl(*args, "--set", f"iterations={iterations}", "--no-progress")
        copy = run_dir / f"at_{iterations}"
        copy.mkdir()
        shutil.copy(run_dir / "best.pt", copy / "best.pt")
        with open(run_dir / "metrics.csv", newline="") as handle:
            walls[iterations] = float(list(csv.DictReader(handle))[-1]["wall_s"])
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", default="5,10,15,20,25,30,40,50")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--work", type=Path, default=Path("runs/navigation_quick"))
    default_out = ROOT / "benchmarks/results/navigation_quick.json"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args()
    stages = sorted(int(n) for n in args.iterations.split(","))
    if args.work.exists():
        sys.exit(f"{args.work} exists: remove it or pass another --work")
    maml_wall = train_in_stages(args.work / "maml", stages, args.overrides)
    pretrain = [*args.overrides, "algorithm=pretrain"]
    pretrain_wall = train_in_stages(args.work / "pretrain", stages, pretrain)

    rows = []
    for n in stages:
        out = args.work / f"eval_{n}"
        maml, pretrained = (args.work / m / f"at_{n}" / "best.pt" for m in ("maml", "pretrain"))
        eval_s = metarl(
            "eval", str(maml), "--baselines", f"pretrained={pretrained}", "--out", str(out),
            "--no-progress",
        )  # fmt: skip
        walls = {
            "train_maml_s": maml_wall[n],
            "train_pretrain_s": pretrain_wall[n],
            "eval_s": eval_s,
        }
        rows.append(result_row(n, walls, json.loads((out / "eval.json").read_text())))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {"config": str(CONFIG.relative_to(ROOT)), "overrides": args.overrides, "rows": rows}
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print_table(rows)
    print(f"wrote {args.out}")


def result_row(iterations: int, walls: dict[str, float], evaluation: dict) -> dict:
    """One N: both methods' returns after 0..3 steps, whether MAML's CI lies above, wall s."""
    row = {"iterations": iterations, **walls}
    for method in ("maml", "pretrained"):
        result = evaluation["methods"][method]
        row[method] = {k: result[k] for k in ("mean", "ci95", "step_sizes", "source")}
    maml, pretrained = row["maml"], row["pretrained"]
    row["maml_ahead"] = [  # per step: MAML's interval entirely above pretrained's
        m - c > p + d
        for m, c, p, d in zip(maml["mean"], maml["ci95"], pretrained["mean"], pretrained["ci95"])
    ]
    return row


def print_table(rows: list[dict]) -> None:
    def cell(result: dict, step: int) -> str:
        return f"{result['mean'][step]:.2f} ± {result['ci95'][step]:.2f}"

    print(
        "| iterations | MAML 1 step | pretrained 1 step | MAML 2 steps | pretrained 2 steps ",
        end="",
    )
    print("| train MAML s | train pretrained s | eval s | total s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        bold = ["**" if r["maml_ahead"][step] else "" for step in (0, 1, 2)]
        total = r["train_maml_s"] + r["train_pretrain_s"] + r["eval_s"]
        print(
            f"| {r['iterations']} | {bold[1]}{cell(r['maml'], 1)}{bold[1]} "
            f"| {cell(r['pretrained'], 1)} | {bold[2]}{cell(r['maml'], 2)}{bold[2]} "
            f"| {cell(r['pretrained'], 2)} | {r['train_maml_s']:.0f} "
            f"| {r['train_pretrain_s']:.0f} | {r['eval_s']:.0f} | {total:.0f} |"
        )


if __name__ == "__main__":
    main()
