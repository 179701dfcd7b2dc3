"""`metarl plot`: learning curves and adaptation curves as a PNG, in the paper's style.

Inputs are run directories (their `metrics.csv`: return before and after
adaptation against environment steps) and `eval.json` files (return against
the number of gradient steps, one line per method with its 95% confidence band).
A run directory that holds an `eval.json` contributes both. Each kind gets its
own panel, 6.4 x 4.8 inches at 100 dpi.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt  # noqa: E402

PANEL_INCHES = (6.4, 4.8)
DPI = 100
METHOD_STYLES = {
    "maml": dict(color="tab:green", label="MAML"),
    "pretrained": dict(color="tab:red", linestyle="--", label="pretrained"),
    "random": dict(color="tab:blue", linestyle=":", label="random init"),
    "oracle": dict(color="black", linestyle="-.", label="oracle"),
    "context": dict(color="tab:purple", linestyle="--", label="context vector"),
}


class PlotError(ValueError):
    """An input cannot be plotted; the message names it."""


def read_metrics(path: Path) -> dict[str, list[float]]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise PlotError(f"{path}: no rows yet")
    return {column: [float(row[column]) for row in rows] for column in rows[0]}


def collect(inputs: list[Path]) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    """(learning curves, adaptation results) named by their input."""
    learning, adaptation = [], []
    for path in map(Path, inputs):
        if path.is_dir():
            metrics = path / "metrics.csv"
            if not metrics.is_file():
                raise PlotError(f"{path}: no metrics.csv (not a run directory)")
            learning.append((path.name, read_metrics(metrics)))
            if (path / "eval.json").is_file():
                adaptation.append((path.name, json.loads((path / "eval.json").read_text())))
        elif path.suffix == ".json" and path.is_file():
            adaptation.append((path.parent.name, json.loads(path.read_text())))
        elif path.name == "metrics.csv" and path.is_file():
            learning.append((path.parent.name, read_metrics(path)))
        else:
            raise PlotError(f"{path}: expected a run directory, metrics.csv or eval.json")
    return learning, adaptation


def plot_learning(axis, learning: list[tuple[str, dict]]) -> None:
    for name, metrics in learning:
        steps = metrics["env_steps"]
        prefix = f"{name}: " if len(learning) > 1 else ""
        axis.plot(steps, metrics["return_pre"], label=f"{prefix}before adaptation")
        posts = sorted(c for c in metrics if c.startswith("return_post_"))
        for column in posts:
            k = column.removeprefix("return_post_")
            axis.plot(steps, metrics[column], label=f"{prefix}after {k} step(s)")
    axis.set_xlabel("environment steps")
    axis.set_ylabel("average return")
    axis.set_title("meta-training")
    axis.legend(fontsize="small")
    axis.grid(alpha=0.3)


def plot_adaptation(axis, adaptation: list[tuple[str, dict]]) -> None:
    for name, document in adaptation:
        for method, result in document["methods"].items():
            style = dict(METHOD_STYLES.get(method, dict(label=method)))
            if len(adaptation) > 1:
                style["label"] = f"{name}: {style['label']}"
            steps, mean = result["steps"], result["mean"]
            half = [0.0 if h != h else h for h in result["ci95"]]  # NaN (one task): no band
            (line,) = axis.plot(steps, mean, marker="o", **style)
            low = [m - h for m, h in zip(mean, half)]
            high = [m + h for m, h in zip(mean, half)]
            axis.fill_between(steps, low, high, color=line.get_color(), alpha=0.15)
        axis.set_xticks(document["methods"][next(iter(document["methods"]))]["steps"])
    title = adaptation[0][1].get("env", "")
    axis.set_xlabel("number of gradient steps")
    axis.set_ylabel("average return")
    axis.set_title(f"adaptation on held-out tasks {title}".strip())
    axis.legend(fontsize="small")
    axis.grid(alpha=0.3)


def plot(inputs: list[Path], output: Path) -> Path:
    """Write the figure for `inputs` to `output` (PNG); returns the path."""
    learning, adaptation = collect(inputs)
    panels = [p for p in (learning and "learning", adaptation and "adaptation") if p]
    figure, axes = plt.subplots(
        1, len(panels), figsize=(PANEL_INCHES[0] * len(panels), PANEL_INCHES[1]), dpi=DPI
    )
    axes = [axes] if len(panels) == 1 else list(axes)
    for axis, panel in zip(axes, panels):
        if panel == "learning":
            plot_learning(axis, learning)
        else:
            plot_adaptation(axis, adaptation)
    figure.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=DPI)
    plt.close(figure)
    return output
