"""A runner group whose runs continue another group's runs with a change.

A group with `fork: {group: G, iteration: N}` in benchmarks/locomotion.yaml starts each of
its runs from G's run of the same role as committed at iteration N (found in the git
history of that run's checkpoint.pt; N may be given per role, {maml: N1, pretrain: N2,
oracle: N3}), with the group's own settings and the metrics rows before N: the same runs,
continued with a change. benchmarks/locomotion.py forks a run when it first starts it.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from metarl.checkpoints import load_checkpoint
from metarl.resuming import fork_run


def committed_checkpoint(root: Path, folder: str, iteration: int, scratch: Path):
    """(scratch/checkpoint.pt, metrics.csv text) of the run in `folder` (relative to the
    repository `root`) as last committed at `iteration`."""

    def git(*arguments: str) -> bytes:
        return subprocess.run(["git", *arguments], cwd=root, capture_output=True, check=True).stdout

    path, seen = scratch / "checkpoint.pt", []
    for revision in git("log", "--format=%H", "--", f"{folder}/checkpoint.pt").decode().split():
        path.write_bytes(git("show", f"{revision}:{folder}/checkpoint.pt"))
        seen.append(load_checkpoint(path)["state"]["iteration"])
        if seen[-1] == iteration:
            return path, git("show", f"{revision}:{folder}/metrics.csv").decode()
    raise SystemExit(
        f"fork: {folder}/checkpoint.pt was never committed at iteration {iteration} "
        f"(committed at iterations {sorted(set(seen))}; a shallow clone has no history: "
        "git fetch --unshallow)"
    )


def fork_from_history(run, runs: Path, root: Path) -> int:
    """Make run.run_dir a new run that continues `run.fork`'s group's run of the same role
    (in `runs`, inside the repository `root`) at the fork's iteration with this group's
    settings, its metrics.csv holding the rows before that iteration; returns the iteration."""
    group, iteration = run.fork["group"], run.fork["iteration"]
    iteration = int(iteration[run.algorithm] if isinstance(iteration, dict) else iteration)
    source = group if run.algorithm == "maml" else f"{group}_{run.algorithm}"
    folder = (runs / source).relative_to(root).as_posix()
    changes = {k: v for k, v in run.settings.items() if k != "iterations"}
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint, metrics = committed_checkpoint(root, folder, iteration, Path(scratch))
        start = fork_run(checkpoint, run.run_dir, changes)
    header, *rows = metrics.splitlines(keepends=True)
    before = [row for row in rows if int(row.split(",", 1)[0]) < start]
    (run.run_dir / "metrics.csv").write_text(header + "".join(before))
    return start
