"""Navigation2D's drift with a meta-learned log-std, and without: 10-iteration means of runs.

Reads the `metrics.csv` of Navigation2D runs made with `meta_log_std: learned` and
`fixed` and prints, per run, the mean post-adaptation return (and log-std and inner
step norm) of each block of 10 iterations; with `-o` it draws the post-adaptation
return (10-iteration running mean) and the mean log-std against the iteration:

    python benchmarks/navigation_log_std.py learned:runs/nav-paper learned:runs/nav-seed1 \
        fixed:runs/nav-fixed fixed:runs/nav-fixed-seed1 -o docs/navigation_log_std.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

BLOCK = 10
COLORS = {"learned": "tab:orange", "fixed": "tab:blue"}


def read(run_dir: Path) -> dict[str, np.ndarray]:
    with (run_dir / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = ("iteration", "return_post_1", "log_std", "inner_step_norm")
    return {c: np.array([float(r[c]) for r in rows]) for c in columns}


def block_means(values: np.ndarray) -> list[float]:
    return [float(values[i : i + BLOCK].mean()) for i in range(0, len(values), BLOCK)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="SETTING:RUN_DIR, SETTING learned or fixed")
    parser.add_argument("-o", "--output", type=Path, help="PNG file")
    args = parser.parse_args()
    runs = []
    for item in args.runs:
        setting, _, path = item.partition(":")
        runs.append((setting, Path(path), read(Path(path))))

    for setting, path, metrics in runs:
        print(f"{setting} {path} ({len(metrics['iteration'])} iterations)")
        for column in ("return_post_1", "log_std", "inner_step_norm"):
            print(f"  {column:16s}", " ".join(f"{m:7.2f}" for m in block_means(metrics[column])))
        post = metrics["return_post_1"]
        spread = np.mean([post[i : i + BLOCK].std(ddof=1) for i in range(BLOCK, len(post), BLOCK)])
        print(f"  standard error of a block mean (iterations 10-): {spread / np.sqrt(BLOCK):.2f}")

    if args.output:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.4), sharex=True)
        seen: dict[str, int] = {}
        for setting, path, metrics in runs:
            post = metrics["return_post_1"]
            running = np.convolve(post, np.ones(BLOCK) / BLOCK, mode="valid")
            x = metrics["iteration"][BLOCK - 1 :]
            seen[setting] = seen.get(setting, -1) + 1  # a setting's further runs: dashed
            style = dict(color=COLORS.get(setting), linestyle=("-", "--", ":")[seen[setting] % 3])
            label = f"log-std {setting}: {path.name}"
            top.plot(x, running, label=label, **style)
            bottom.plot(metrics["iteration"], metrics["log_std"], label=label, **style)
        top.set_ylim(-10, -2)
        top.set_ylabel(f"return after 1 step\n(mean of {BLOCK} iterations)")
        bottom.set_ylabel("mean log-std of theta")
        bottom.set_xlabel("meta-iteration")
        top.legend(fontsize="small")
        for axis in (top, bottom):
            axis.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(args.output, dpi=100)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
