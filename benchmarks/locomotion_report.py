"""The README's locomotion results: tables and figures from benchmarks/results and the runs.

Used by `python benchmarks/locomotion.py report`. Each group's table goes between the
README's `<!-- locomotion:GROUP -->` and `<!-- /locomotion:GROUP -->` markers, with the
budget every run was trained with; its figure (learning curves of the group's runs and
the adaptation curves of the evaluation) is docs/GROUP.png. Every evaluation is also kept
as a stage, benchmarks/results/stages/GROUP_ITERATIONS_CHECKPOINT.json, and a group
evaluated at two or more stages gets a table of its returns after one step at each.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from readme_markers import has_section, replace_section  # benchmarks/ is on sys.path

from metarl.evaluation import mean_and_ci95
from metarl.metrics import read_rows
from metarl.plotting import plot


def report(readme: Path, results: Path, docs: Path, groups_and_runs) -> None:
    """README tables (between the group's markers) and docs/GROUP.png, from benchmarks/results."""
    groups, runs = groups_and_runs
    root = readme.parent
    text = readme.read_text()
    for group, spec in groups.items():
        path = results / f"{group}_eval.json"
        if not path.exists():
            continue
        document = json.loads(path.read_text())
        members = [
            r.run_dir for r in runs if r.group == group and (r.run_dir / "metrics.csv").exists()
        ]
        with tempfile.TemporaryDirectory() as scratch:
            curves = evaluated_curves(members, document, root, Path(scratch))
            figure = plot([*curves, path], docs / f"{group}.png")
        table = results_table(spec, document, figure.relative_to(root))
        if not has_section(text, f"locomotion:{group}"):
            print(f"{group}: README has no <!-- locomotion:{group} --> marker; table not written")
            continue
        stages = stages_table(spec, sorted((results / "stages").glob(f"{group}_[0-9]*.json")))
        text = replace_section(text, f"locomotion:{group}", "\n".join([table, *stages]))
        print(f"{group}: README table and {figure.relative_to(root)} written")
    readme.write_text(text)


def evaluated_curves(run_dirs: list[Path], document: dict, root: Path, scratch: Path) -> list:
    """Each run's learning curve up to the iterations its evaluation saw: copies of the run
    directories (config.yaml, the metrics rows of iterations < iterations_done) in `scratch`,
    so that a run trained on after its evaluation does not draw past it."""
    done = {run["run_dir"]: run["iterations_done"] for run in document["runs"].values()}
    copies = []
    for run_dir in run_dirs:
        limit = done.get(str(run_dir.relative_to(root)))
        if limit is None:
            continue  # not in this evaluation
        copy = scratch / run_dir.name
        copy.mkdir()
        shutil.copy(run_dir / "config.yaml", copy / "config.yaml")
        columns, rows = read_rows(run_dir / "metrics.csv")
        with (copy / "metrics.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows(row for row in rows if int(row["iteration"]) < limit)
        copies.append(copy)
    return copies


def results_table(spec: dict, document: dict, figure: Path) -> str:
    names = {"maml": "MAML", "pretrained": "pretrained", "random": "random init",
             "oracle": "oracle (no adaptation)"}  # fmt: skip
    steps = len(document["methods"]["maml"]["mean"])
    lines = [
        "| method | " + step_columns(steps) + " | step sizes |",
        "|---|" + "---|" * (steps + 1),
    ]
    for method, result in document["methods"].items():
        cells = [f"{m:.1f} ± {h:.1f}" for m, h in zip(result["mean"], result["ci95"])]
        sizes = ", ".join(f"{s:g}" for s in result["step_sizes"]) or "–"
        lines.append(f"| {names.get(method, method)} | " + " | ".join(cells) + f" | {sizes} |")
    paired = paired_table(document)
    paper = ", ".join(f"{paper_label(k)} {v}" for k, v in spec.get("paper", {}).items())
    runs = document["runs"]
    budget = []
    for key, run in runs.items():
        done, planned = run["iterations_done"], run["iterations_planned"]
        budget.append(
            f"{key}: {done}{'' if done >= planned else f' of {planned} planned'} iterations of "
            f"{run['meta_batch_size']} tasks x {run['rollouts_per_task']} rollouts x "
            f"{run['horizon'] or 200} steps, {run['env_steps'] / 1e6:.1f}M env steps, "
            f"{run['wall_hours']:.1f} h ({evaluated_checkpoint(run)})"
        )
    return "\n".join(
        [
            f"{document['tasks']} held-out tasks, {document.get('rollouts') or 20} rollouts per "
            "task and step, mean return ± 95% CI over tasks "
            f"(`benchmarks/results/{Path(figure).stem}_eval.json`). Budget: "
            + "; ".join(budget)
            + ".",
            "",
            *lines,
            "",
            *paired,
            *term_table(document),
            *episode_table(document, names),
            *task_table(document, names),
            f"The paper (Figure 5, read off the plot, H = 200): {paper or 'no value read'}.",
            "",
            f"![{spec['title']}: learning and adaptation curves]({figure})",
        ]
    )


def evaluated_checkpoint(run: dict) -> str:
    """'best.pt: iteration 98'."""
    iteration = (
        run["evaluated_iteration"] if "evaluated_iteration" in run else run["best_iteration"]
    )
    return f"{checkpoint_file(run)}: iteration {iteration}"


def checkpoint_file(run: dict) -> str:
    """The file a run's evaluation used; results written before the choice existed
    evaluated best.pt."""
    return run.get("evaluated_checkpoint", "best.pt")


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
        f"The same after {step} step{'s' if step != 1 else ''}, split into the reward terms "
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


def task_table(document: dict, names: dict) -> list[str]:
    """Mean return before → after one step, by the task's parameter (results that record
    their tasks, each task a single number: a direction, a goal velocity)."""
    tasks = document.get("task_parameters")
    if (
        not tasks
        or len(tasks[0]) != 1
        or not isinstance(next(iter(tasks[0].values())), int | float)
    ):
        return []
    key = next(iter(tasks[0]))
    groups = task_groups(np.array([task[key] for task in tasks], dtype=float))
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
    return " | ".join(f"{k} step{'s' if k != 1 else ''}" for k in range(steps))


def paper_label(key: str) -> str:
    """`pre`, `post_K` or `oracle` of a group's paper values, in words."""
    if key == "pre":
        return "MAML before adaptation"
    if key.startswith("post_"):
        return f"MAML after {key.removeprefix('post_')} step(s)"
    return key


def stage_name(group: str, document: dict) -> str:
    """The stage file of an evaluation: its group, MAML's iterations done, the checkpoint
    evaluated (halfcheetah_vel_0300_checkpoint.json)."""
    maml = document["runs"]["maml"]
    checkpoint = checkpoint_file(maml).removesuffix(".pt")
    return f"{group}_{maml['iterations_done']:04d}_{checkpoint}.json"


def stages_table(spec: dict, paths: list[Path]) -> list[str]:
    """After one step, held-out, at each stage of a group's budget (two stages or more)."""
    if len(paths) < 2:
        return []
    documents = [json.loads(p.read_text()) for p in paths]
    headers = []
    for document in documents:
        run = document["runs"]["maml"]
        headers.append(f"{run['iterations_done']} it. ({checkpoint_file(run)})")
    lines = [
        "After one step at each stage of the budget, held-out, mean ± 95% CI "
        "(`benchmarks/results/stages/`; each stage's own runs and checkpoints):",
        "",
        "| after 1 step | " + " | ".join(headers) + " | paper |",
        "|---|" + "---|" * (len(documents) + 1),
    ]
    paper = spec.get("paper", {})
    names = {"maml": "MAML", "pretrained": "pretrained", "oracle": "oracle"}
    for method, name in names.items():
        cells = []
        for document in documents:
            result = document["methods"][method]
            step = min(1, len(result["mean"]) - 1)  # an evaluation of 0 steps: its only column
            cells.append(f"{result['mean'][step]:.1f} ± {result['ci95'][step]:.1f}")
        reference = {"maml": paper.get("post_1"), "oracle": paper.get("oracle")}.get(method)
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {'' if reference is None else reference} |"
        )
    cells = []
    for document in documents:
        methods = document["methods"]
        if not methods["maml"].get("per_task") or not methods["pretrained"].get("per_task"):
            cells.append("–")
            continue
        mean, half = paired_differences(
            methods["maml"]["per_task"], methods["pretrained"]["per_task"]
        )
        cells.append(f"{mean[1]:+.1f} ± {half[1]:.1f}")
    lines.append("| MAML − pretrained (paired) | " + " | ".join(cells) + " | |")
    return ["", *lines]
