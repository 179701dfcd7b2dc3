"""pytorch-maml-rl (the most used PyTorch MAML-TRPO) timed beside metarl, for a speed ratio.

Its code stays outside this repository: `--anchor DIR` points at a folder made as
../shared/anchors/pytorch-maml-rl/README.md describes (DIR/venv with gym 0.17.3 and
torch, DIR/src with its maml_rl, configs and train.py, and the harness run_train.py,
which prints the wall time of each meta-iteration). Its Navigation2D config is cut to a
few meta-iterations; the harness's per-iteration times are parsed from its output.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[2] / "shared/anchors/pytorch-maml-rl/run_train.py"
ITERATION = re.compile(r"\[harness\] iter (\d+): ([0-9.]+)s")


def check_anchor(anchor: Path) -> None:
    for needed in (anchor / "venv/bin/python", anchor / "src/train.py", HARNESS):
        if not needed.exists():
            raise SystemExit(f"--anchor {anchor}: {needed} is missing (see {HARNESS.parent})")


def anchor_iteration_seconds(anchor: Path, iterations: int, workers: int = 2) -> list[float]:
    """Wall seconds of pytorch-maml-rl's meta-iterations 1..n (0, the warm-up, dropped).

    Its settings: 2D navigation, 20 tasks x 20 rollouts x 100 steps before and after
    adaptation, 2x64 tanh, one inner step, second order, 10 CG iterations (exact
    Hessian-vector products), 15 line-search steps; OMP_NUM_THREADS=1 as its README asks.
    """
    config = (anchor / "src/configs/maml/2d-navigation.yaml").read_text()
    small = anchor / "nav-benchmark.yaml"
    small.write_text(re.sub(r"(?m)^num-batches: \d+", f"num-batches: {iterations + 1}", config))
    result = subprocess.run(
        [
            str(anchor / "venv/bin/python"),
            str(HARNESS),
            "--config",
            str(small),
            "--seed",
            "1",
            "--num-workers",
            str(workers),
        ],
        cwd=anchor / "src",
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    times = {int(i): float(s) for i, s in ITERATION.findall(result.stdout)}
    if len(times) < iterations + 1:
        raise RuntimeError(
            f"pytorch-maml-rl printed {len(times)} iteration times:\n{result.stdout}"
        )
    return [times[i] for i in range(1, iterations + 1)]


def median(values: list[float]) -> float:
    return statistics.median(values)
