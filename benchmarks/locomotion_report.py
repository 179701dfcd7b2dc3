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

from locomotion_tables import (  # benchmarks/ is on sys.path
    episode_table,
    paired_differences,
    paired_table,
    step_columns,
    task_table,
    term_table,
)
from readme_markers import has_section, replace_section  # benchmarks/ is on sys.path

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
