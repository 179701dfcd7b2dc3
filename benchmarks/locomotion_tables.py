"""The tables of one locomotion evaluation that compare MAML with its baselines.

Used by locomotion_report.py for each group's README section: MAML minus each baseline
paired task by task (the methods are evaluated on the same held-out tasks), that
difference split into the reward terms, what the returns are made of (episode length,
forward term), and the returns by task parameter (a direction, a goal velocity). Each
reads an eval.json document; results written before a field existed get no table.
"""

from __future__ import annotations

import numpy as np

from metarl.evaluation import mean_and_ci95


def paired_differences(maml: list, other: list) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 95% CI half-width of MAML minus a baseline, task by task, per step.

    The methods are evaluated on the same held-out tasks, so the per-task differences
    remove the spread between tasks that the per-method intervals carry.
    """
    return mean_and_ci95(np.asarray(maml, dtype=float) - np.asarray(other, dtype=float))


def paired_table(document: dict) -> list[str]:
    """Rows of MAML minus each adapted baseline, paired over the same tasks (or none)."""
    methods = document["methods"]
    maml = methods["maml"].get("per_task")
    others = [m for m in ("pretrained", "random") if methods.get(m, {}).get("per_task")]
    if not maml or not others:
        return []
    steps = len(methods["maml"]["mean"])
    lines = [
        "MAML minus each baseline, paired task by task (the same held-out tasks), mean ± 95% CI:",
        "",
        "| difference | " + step_columns(steps) + " |",
        "|---|" + "---|" * steps,
    ]
    for other in others:
        mean, half = paired_differences(maml, methods[other]["per_task"])
        cells = " | ".join(f"{m:+.1f} ± {h:.1f}" for m, h in zip(mean, half))
        lines.append(f"| MAML − {other} | {cells} |")
    return [*lines, ""]


def term_table(document: dict, step: int = 1) -> list[str]:
    """Rows of MAML minus each adapted baseline after `step` steps, paired over the same
    tasks, for the return and each of its reward terms (results that record them)."""
    methods = document["methods"]
    others = [m for m in ("pretrained", "random") if m in methods]
    if not others or not all(methods[m].get("per_task_terms") for m in ["maml", *others]):
        return []
    terms = list(methods["maml"]["per_task_terms"])
    lines = [
        f"The same after {steps_label(step)}, split into the reward terms "
        "that make up the return (per episode):",
        "",
        "| difference | return | " + " | ".join(f"`{t}`" for t in terms) + " |",
        "|---|" + "---|" * (len(terms) + 1),
    ]
    for other in others:
        pairs = [(methods["maml"]["per_task"], methods[other]["per_task"])]
        pairs += [tuple(methods[m]["per_task_terms"][t] for m in ("maml", other)) for t in terms]
        cells = []
        for maml, baseline in pairs:
            mean, half = paired_differences(maml, baseline)
            cells.append(f"{mean[step]:+.1f} ± {half[step]:.1f}")
        lines.append(f"| MAML − {other} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def episode_table(document: dict, names: dict) -> list[str]:
    """Rows of mean episode length / forward term per step (results that record them)."""
    methods = document["methods"]
    if not all("reward_forward" in m.get("episode_means", {}) for m in methods.values()):
        return []
    steps = len(methods["maml"]["mean"])
    lines = [
        "What the returns are made of: mean episode length (env steps) / forward term "
        "(`reward_forward`, per episode) of the evaluated episodes:",
        "",
        "| method | " + step_columns(steps) + " |",
        "|---|" + "---|" * steps,
    ]
    for method, result in methods.items():
        means = result["episode_means"]
        cells = " | ".join(
            f"{n:.0f} / {f:.1f}" for n, f in zip(means["episode_length"], means["reward_forward"])
        )
        lines.append(f"| {names.get(method, method)} | {cells} |")
    return [*lines, ""]


def task_groups(values: np.ndarray, bins: int = 4) -> list[tuple[str, np.ndarray]]:
    """(label, task indices) of each group of held-out tasks: one per value where there are
    at most `bins` values (a direction), else `bins` groups of equal count by value."""
    distinct = np.unique(values)
    if len(distinct) <= bins:
        return [(f"{v:g}", np.flatnonzero(values == v)) for v in distinct]
    order = np.argsort(values, kind="stable")
    return [
        (f"{values[part[0]]:.2f} to {values[part[-1]]:.2f}", np.sort(part))
        for part in np.array_split(order, bins)
    ]


def parameter_groups(tasks: list | None) -> tuple[str, list] | None:
    """(the parameter's name, `task_groups` of its values) of tasks that are each a single
    number (a direction, a goal velocity); None for other tasks, or none recorded."""
    if (
        not tasks
        or len(tasks[0]) != 1
        or not isinstance(next(iter(tasks[0].values())), int | float)
    ):
        return None
    key = next(iter(tasks[0]))
    return key, task_groups(np.array([task[key] for task in tasks], dtype=float))


def task_table(document: dict, names: dict) -> list[str]:
    """Mean return before → after one step, by the task's parameter (results that record
    their tasks, each task a single number: a direction, a goal velocity)."""
    grouped = parameter_groups(document.get("task_parameters"))
    if grouped is None:
        return []
    key, groups = grouped
    lines = [
        f"By task: mean return before → after one step, the held-out tasks grouped by `{key}`:",
        "",
        "| method | " + " | ".join(f"{label} ({len(i)} tasks)" for label, i in groups) + " |",
        "|---|" + "---|" * len(groups),
    ]
    for method, result in document["methods"].items():
        returns = np.asarray(result["per_task"], dtype=float)
        if result["adapted"]:
            cells = [f"{returns[i, 0].mean():.1f} → {returns[i, 1].mean():.1f}" for _, i in groups]
        else:
            cells = [f"{returns[i, 0].mean():.1f}" for _, i in groups]
        lines.append(f"| {names.get(method, method)} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def step_columns(steps: int) -> str:
    """'0 steps | 1 step | 2 steps ...', the column names of an adaptation table."""
    return " | ".join(steps_label(k) for k in range(steps))


def steps_label(k: int) -> str:
    """'1 step', '3 steps'."""
    return f"{k} step{'s' if k != 1 else ''}"
