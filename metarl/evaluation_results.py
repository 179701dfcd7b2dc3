"""An evaluation's results: eval.json and eval.csv, and the table `metarl eval` prints."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from metarl.evaluation import AdaptationCurve, EvaluationSettings
from metarl.run_dir import writable_dir, write_text_file, writing


def write_results(
    curves: list[AdaptationCurve], settings: EvaluationSettings, env_id: str, out_dir: Path
) -> tuple[Path, Path]:
    """eval.json (everything, per task) and eval.csv (method, step, mean, CI bounds)."""
    writable_dir(out_dir)
    methods = {}
    rows = []
    for curve in curves:
        mean, half = curve.summary()
        methods[curve.method] = {
            "steps": list(range(len(mean))),
            "mean": mean.tolist(),
            "ci95": half.tolist(),
            "step_sizes": curve.step_sizes,
            "adapted": curve.adapted,
            "source": curve.source,
            "per_task": curve.per_task,
            "episode_means": curve.episode_means,
            "per_task_terms": curve.per_task_terms,
        }
        if curve.tuning_scores:  # pretrained, random: the grid the step size was tuned on
            scores = {str(size): score for size, score in curve.tuning_scores.items()}
            methods[curve.method]["tuning_scores"] = scores
        success = [""] * len(mean)  # blank for envs without a success flag
        if curve.per_task_success is not None:  # Meta-World: read the success rate
            success = np.mean(curve.per_task_success, 0).tolist()
            methods[curve.method]["success"] = success
            methods[curve.method]["per_task_success"] = curve.per_task_success
        for step, (m, h) in enumerate(zip(mean, half)):
            rows.append([curve.method, step, m, m - h, m + h, success[step]])
    document = {
        "env": env_id,
        "tasks": settings.tasks,
        "steps": settings.steps,
        "rollouts": settings.rollouts,
        "seed": settings.seed,
        "methods": methods,
    }
    if curves and plain_parameters(curves[0].tasks):  # e.g. {"velocity": 1.46}, per task
        document["task_parameters"] = curves[0].tasks
    json_path, csv_path = out_dir / "eval.json", out_dir / "eval.csv"
    write_text_file(json_path, json.dumps(document, indent=2))
    with writing(csv_path), csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "step", "mean_return", "ci95_low", "ci95_high", "success_rate"])
        writer.writerows(rows)
    return json_path, csv_path


def plain_parameters(tasks: list) -> bool:
    """Whether each task is a dict of numbers or lists of numbers (the locomotion and
    navigation envs), which eval.json records; Meta-World's (an env name and its
    serialized task) are not recorded."""

    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    return all(
        isinstance(task, dict)
        and all(number(v) or (isinstance(v, list) and all(map(number, v))) for v in task.values())
        for task in tasks
    )


def format_table(curves: list[AdaptationCurve]) -> str:
    """Methods as rows, gradient steps as columns: mean ± 95% CI half-width."""
    steps = len(curves[0].per_task[0])
    lines = [f"{'method':<12}" + "".join(f"{f'step {k}':>18}" for k in range(steps))]
    for curve in curves:
        mean, half = curve.summary()
        cells = "".join(f"{f'{m:.2f} ± {h:.2f}':>18}" for m, h in zip(mean, half))
        lines.append(f"{curve.method:<12}{cells}")
    if all(c.per_task_success is not None for c in curves):
        lines.append("success rate (fraction of episodes that succeeded):")
        for curve in curves:
            rates = np.mean(curve.per_task_success, 0)
            lines.append(f"{curve.method:<12}" + "".join(f"{r:>18.2f}" for r in rates))
    if all("episode_length" in c.episode_means for c in curves):
        lines.append("mean episode length (env steps):")
        for curve in curves:
            lengths = curve.episode_means["episode_length"]
            lines.append(f"{curve.method:<12}" + "".join(f"{n:>18.1f}" for n in lengths))
    return "\n".join(lines)
