"""The runner's evaluation of a group: the checkpoints it takes, the `metarl eval` command
it runs, and the budget it records beside the results.

A group is evaluated as one `metarl eval` of its MAML run against its pretrained and
oracle runs (and random init), 40 held-out tasks, 0-3 steps. Its keys here:
  - `checkpoint: best | last`: each run's best.pt (default) or checkpoint.pt;
  - `finetune_step_sizes: [...]`: the grid pretrained and random init are tuned on
    (default: the run's config's), for a baseline whose best step sits at the grid's edge.
The JSON goes to benchmarks/results/GROUP_eval.json, and a copy per stage of the budget
to benchmarks/results/stages/.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHECKPOINT_FILES = {"best": "best.pt", "last": "checkpoint.pt"}


def checkpoint_choice(group: dict) -> str:
    """Which of a run's checkpoints its group evaluates: `best` (default) or `last`."""
    which = group.get("checkpoint", "best")
    if which not in CHECKPOINT_FILES:
        raise ValueError(f"checkpoint: {which!r} in locomotion.yaml; use best or last")
    return which


def chosen_checkpoints(group: dict, members: dict) -> dict[str, Path]:
    """role -> the checkpoint file of that run the group evaluates (`members`: role -> run)."""
    which = CHECKPOINT_FILES[checkpoint_choice(group)]
    return {role: run.run_dir / which for role, run in members.items()}


def eval_command(
    group: dict, chosen: dict[str, Path], out: str, tasks: int, physics_threads: int
) -> list[str]:
    """`metarl eval` of the chosen MAML checkpoint against the chosen baselines."""
    command = [
        sys.executable, "-m", "metarl.cli", "eval", str(chosen["maml"]),
        "--tasks", str(tasks), "--steps", "3", "--no-progress", "--out", out,
        "--physics-threads", str(physics_threads),
        "--baselines", f"pretrained={chosen['pretrain']},random,oracle={chosen['oracle']}",
    ]  # fmt: skip
    sizes = group.get("finetune_step_sizes")
    if sizes is not None:
        if not sizes or not all(isinstance(s, (int, float)) and s > 0 for s in sizes):
            raise ValueError(f"finetune_step_sizes: {sizes!r}; give a list of positive numbers")
        command += ["--finetune-step-sizes", ",".join(str(float(s)) for s in sizes)]
    return command


def evaluate_group(
    name: str,
    group: dict,
    members: dict,
    results: Path,
    root: Path,
    tasks: int = 40,
    physics_threads: int = 1,
) -> None:
    """Evaluate the group's runs (`members`: role -> run) and write its JSON."""
    from locomotion_report import stage_name  # (imports matplotlib: only where needed)

    which, chosen = checkpoint_choice(group), chosen_checkpoints(group, members)
    with tempfile.TemporaryDirectory() as out:
        command = eval_command(group, chosen, out, tasks, physics_threads)
        print(f"{name}: {' '.join(command[2:])}", flush=True)
        subprocess.run(command, check=True, cwd=root)
        document = json.loads((Path(out) / "eval.json").read_text())
    document["runs"] = {role: run_summary(run, which, root) for role, run in members.items()}
    text = json.dumps(document, indent=2) + "\n"
    (results / "stages").mkdir(parents=True, exist_ok=True)
    (results / f"{name}_eval.json").write_text(text)
    (results / "stages" / stage_name(name, document)).write_text(text)  # kept per stage


def run_summary(run, which: str, root: Path) -> dict:
    """The budget a run was trained with and the checkpoint evaluated, for the report."""
    from metarl.checkpoints import load_checkpoint

    checkpoint = load_checkpoint(run.run_dir / "checkpoint.pt")
    evaluated = load_checkpoint(run.run_dir / CHECKPOINT_FILES[which])["state"]
    config = checkpoint["config"]
    return {
        "run_dir": str(run.run_dir.relative_to(root)),
        "iterations_done": checkpoint["state"]["iteration"],
        "iterations_planned": run.iterations,
        "env_steps": checkpoint["state"]["env_steps"],
        "wall_hours": checkpoint["state"]["wall_s"] / 3600,
        "evaluated_checkpoint": CHECKPOINT_FILES[which],
        "evaluated_iteration": evaluated["iteration"],
        "meta_batch_size": config["meta_batch_size"],
        "rollouts_per_task": config["rollouts_per_task"],
        "horizon": config["horizon"],
        "metarl_version": checkpoint["metarl_version"],
        "algorithm_version": checkpoint["algorithm_version"],
    }
