"""`metarl plot`: learning curves and adaptation curves as a PNG, in the paper's style.

Inputs are run directories (their `metrics.csv`: return before and after
adaptation against environment steps; for supervised runs, losses against
iterations) and `eval.json` files (return, MSE or accuracy against the number
of gradient steps, one line per method with its 95% confidence band).
A run directory that holds an `eval.json` contributes both. Each kind gets its
own panel, 6.4 x 4.8 inches at 100 dpi.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import yaml

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt  # noqa: E402

from metarl.config import EVALUATED_AS  # noqa: E402
from metarl.metrics import read_rows  # noqa: E402
from metarl.run_dir import writing  # noqa: E402

PANEL_INCHES = (6.4, 4.8)
DPI = 100
METHOD_STYLES = {
    "maml": dict(color="tab:green", label="MAML"),
    "pretrained": dict(color="tab:red", linestyle="--", label="pretrained"),
    "random": dict(color="tab:blue", linestyle=":", label="random init"),
    "oracle": dict(color="black", linestyle="-.", label="oracle"),
    "context": dict(color="tab:purple", linestyle="--", label="context vector"),
}
# in the learning panel a run takes its method's colour (the method its `algorithm`
# is evaluated as) and the line style tells its curves apart
CURVE_STYLES = {"return_pre": ":", "return_post_1": "-", "return_post_2": "--"}


class PlotError(ValueError):
    """An input cannot be plotted; the message names it."""


def read_metrics(path: Path) -> dict[str, list[float]]:
    """metarl's metrics.csv reader: a row cut off by a killed writer (a run being plotted
    while it trains) is skipped."""
    columns, rows = read_rows(path)
    if not rows:
        raise PlotError(f"{path}: no rows yet")
    # an empty cell is a column added after that row was logged (a newer metarl): NaN
    return {
        column: [float(row[column]) if row[column] != "" else float("nan") for row in rows]
        for column in columns
    }


def run_method(run_dir: Path) -> str | None:
    """The eval.json method a run directory trained (from its config.yaml), if it says."""
    config = run_dir / "config.yaml"
    if not config.is_file():
        return None
    algorithm = yaml.safe_load(config.read_text()).get("algorithm", "maml")
    return EVALUATED_AS.get(algorithm)  # none for a supervised-only algorithm (multitask)


def collect(
    inputs: list[Path],
) -> tuple[list[tuple[str, dict, str | None]], list[tuple[str, dict]]]:
    """(learning curves with their run's method, adaptation results) named by their input."""
    learning, adaptation = [], []
    for path in map(Path, inputs):
        if path.is_dir():
            metrics = path / "metrics.csv"
            if not metrics.is_file():
                raise PlotError(f"{path}: no metrics.csv (not a run directory)")
            learning.append((path.name, read_metrics(metrics), run_method(path)))
            if (path / "eval.json").is_file():
                adaptation.append((path.name, json.loads((path / "eval.json").read_text())))
        elif path.suffix == ".json" and path.is_file():
            adaptation.append((path.parent.name, json.loads(path.read_text())))
        elif path.name == "metrics.csv" and path.is_file():
            learning.append((path.parent.name, read_metrics(path), run_method(path.parent)))
        else:
            raise PlotError(f"{path}: expected a run directory, metrics.csv or eval.json")
    return learning, adaptation


def learning_columns(metrics: dict[str, list[float]]) -> tuple[str, list[str], str]:
    """(x column, y columns, y label): returns for RL runs, losses for supervised ones."""
    x = "env_steps" if "env_steps" in metrics else "iteration"
    returns = sorted(c for c in metrics if c.startswith("return_"))
    if returns:
        return x, ["return_pre", *[c for c in returns if c != "return_pre"]], "average return"
    losses = [
        c
        for c in ("loss_post", "val_loss_pre", "val_loss_post")
        if c in metrics and any(v == v for v in metrics[c])  # not all NaN
    ]
    if not losses:
        raise PlotError(f"metrics.csv has no return or loss columns: {sorted(metrics)}")
    return x, losses, "loss"


def curve_label(column: str, method: str | None = None) -> str:
    """A curve's legend; a baseline run (pretrained, oracle, context) has no inner step, so
    its return_pre is its training return, not a return "before adaptation"."""
    if column == "return_pre":
        return "before adaptation" if method in (None, "maml") else "training return"
    if column.startswith("return_post_"):
        return f"after {column.removeprefix('return_post_')} step(s)"
    return column


def plot_learning(axis, learning: list[tuple[str, dict, str | None]]) -> None:
    """Each run's curves; a run whose method is known (MAML, pretrained, oracle) is drawn
    in that method's adaptation-panel colour, its curves told apart by line style."""
    for name, metrics, method in learning:
        x, columns, ylabel = learning_columns(metrics)
        prefix = f"{name}: " if len(learning) > 1 else ""
        color = METHOD_STYLES[method]["color"] if method and len(learning) > 1 else None
        for column in columns:  # rows without a value (NaN: not measured then) are skipped
            points = [(a, b) for a, b in zip(metrics[x], metrics[column]) if b == b]
            xs, ys = zip(*points)
            style = dict(color=color, linestyle=CURVE_STYLES.get(column, "-.")) if color else {}
            axis.plot(xs, ys, label=f"{prefix}{curve_label(column, method)}", **style)
    axis.set_xlabel(x.replace("_", " "))
    axis.set_ylabel(ylabel)
    axis.set_title("meta-training")
    axis.legend(fontsize="small")
    axis.grid(alpha=0.3)


def adaptation_series(document: dict) -> tuple[list[tuple[str, dict, list, list, list]], str]:
    """([(method key, style, steps, mean, ci95)], y label) of an RL or supervised eval.json."""
    if "methods" in document:  # RL: metarl.evaluation
        series = [
            (method, r["steps"], r["mean"], r["ci95"]) for method, r in document["methods"].items()
        ]
        ylabel = "average return"
    elif "rows" in document:  # supervised: metarl.supervised.evaluate
        metric = "mse" if document.get("problem") == "sinusoid" else "accuracy"
        rows = [r for r in document["rows"] if r["metric"] == metric]
        series = []
        for shots in sorted({r["shots"] for r in rows}):
            chosen = sorted((r for r in rows if r["shots"] == shots), key=lambda r: r["step"])
            series.append(
                (
                    f"{document.get('algorithm', 'maml')} (K={shots})",
                    [r["step"] for r in chosen],
                    [r["mean"] for r in chosen],
                    [r["ci95"] for r in chosen],
                )
            )
        ylabel = metric
    else:
        raise PlotError("eval.json has neither 'methods' (RL) nor 'rows' (supervised)")
    return series, ylabel


def focus_limits(bands: list[tuple[float, float]]) -> tuple[float, float]:
    """Y-limits around the (low, high) confidence bands of the methods that matter, padded."""
    low, high = min(b[0] for b in bands), max(b[1] for b in bands)
    pad = 0.08 * (high - low) or 0.08 * abs(high) or 1.0
    return low - pad, high + pad


def mark_clipped(axis, steps: list, mean: list, color: str, limits: tuple[float, float]) -> bool:
    """Triangles at the axis edge for points outside `limits`, each labeled with its value."""
    clipped = False
    for step, value in zip(steps, mean):
        if limits[0] <= value <= limits[1]:
            continue
        below = value < limits[0]
        edge = limits[0] if below else limits[1]
        axis.plot([step], [edge], marker="v" if below else "^", color=color, clip_on=False)
        axis.annotate(
            f"{value:.1f}",
            (step, edge),
            textcoords="offset points",
            xytext=(6, 6 if below else -12),
            color=color,
            fontsize="small",
        )
        clipped = True
    return clipped


def plot_adaptation(axis, adaptation: list[tuple[str, dict]]) -> None:
    """One line and 95% band per method, the y-axis fitted to every method but random init.

    A random initialization starts far below the others (on Navigation2D -152 against
    -20) and would squeeze them into a strip; its points off the axis are marked at
    the edge with their values.
    """
    ylabel = ""
    drawn, bands = [], []
    for name, document in adaptation:
        series, ylabel = adaptation_series(document)
        for method, steps, mean, ci95 in series:
            style = dict(METHOD_STYLES.get(method, dict(label=method)))
            if len(adaptation) > 1:
                style["label"] = f"{name}: {style['label']}"
            half = [0.0 if h != h else h for h in ci95]  # NaN (one task): no band
            (line,) = axis.plot(steps, mean, marker="o", **style)
            low = [m - h for m, h in zip(mean, half)]
            high = [m + h for m, h in zip(mean, half)]
            axis.fill_between(steps, low, high, color=line.get_color(), alpha=0.15)
            axis.set_xticks(steps)
            drawn.append((line, steps, mean))
            if method != "random":
                bands.append((min(low), max(high)))
    if bands:
        limits = focus_limits(bands)
        axis.set_ylim(*limits)
        for line, steps, mean in drawn:
            if mark_clipped(axis, steps, mean, line.get_color(), limits):
                line.set_label(f"{line.get_label()} (off the axis: values at the marks)")
    title = adaptation[0][1].get("env", adaptation[0][1].get("problem", ""))
    axis.set_xlabel("number of gradient steps")
    axis.set_ylabel(ylabel)
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
    with writing(output):
        output.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(output, dpi=DPI)
    plt.close(figure)
    return output
