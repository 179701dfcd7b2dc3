"""How many Navigation2D iterations MAML needs to beat the pretrained baseline, and what they cost.

The README's three-minute first experience trains configs/navigation.yaml for N
iterations, trains the pretrained baseline for as many, and evaluates both
(`metarl eval RUN --baselines pretrained`: best.pt of each, 40 held-out tasks,
0-3 steps). This script measures that for several N at once: each run is
extended by `metarl train --resume --set iterations=N` (resume is exact, so the
run at N equals a straight N-iteration run) and its best.pt copied at every N;
then each N is evaluated. It writes benchmarks/results/navigation_quick.json and
prints a table: MAML's and pretrained's return after one step (mean ± 95% CI
over tasks), whether the intervals are apart, and the wall time of each stage.

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
        methods = json.loads((out / "eval.json").read_text())["methods"]
        row = {"iterations": n, "train_maml_s": maml_wall[n], "train_pretrain_s": pretrain_wall[n]}
        row["eval_s"] = eval_s
        for method in ("maml", "pretrained"):
            row[f"{method}_step1"] = methods[method]["mean"][1]
            row[f"{method}_step1_ci95"] = methods[method]["ci95"][1]
        low = row["maml_step1"] - row["maml_step1_ci95"]
        row["maml_ahead"] = low > row["pretrained_step1"] + row["pretrained_step1_ci95"]
        rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {"config": str(CONFIG.relative_to(ROOT)), "overrides": args.overrides, "rows": rows}
    args.out.write_text(json.dumps(document, indent=2) + "\n")

    print("| iterations | MAML, 1 step | pretrained, 1 step | MAML ahead (CIs apart) |", end="")
    print(" train MAML s | train pretrained s | eval s | total s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        total = r["train_maml_s"] + r["train_pretrain_s"] + r["eval_s"]
        print(
            f"| {r['iterations']} | {r['maml_step1']:.2f} ± {r['maml_step1_ci95']:.2f} "
            f"| {r['pretrained_step1']:.2f} ± {r['pretrained_step1_ci95']:.2f} "
            f"| {'yes' if r['maml_ahead'] else 'no'} | {r['train_maml_s']:.0f} "
            f"| {r['train_pretrain_s']:.0f} | {r['eval_s']:.0f} | {total:.0f} |"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
