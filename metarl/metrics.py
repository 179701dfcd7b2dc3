"""Per-iteration metrics: one CSV row and the same scalars in TensorBoard."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from metarl.run_dir import writing
from metarl.runtime import signals_deferred

# CSV column prefix -> TensorBoard tag group (first match)
_GROUPS = {
    "return": "returns",
    "reward_": "reward_terms",
    "episode_length": "diagnostics",
    "explained_variance": "diagnostics",
    "log_std": "diagnostics",
    "inner_step_norm": "diagnostics",
    "surrogate": "trpo",
    "kl": "trpo",
    "line_search": "trpo",
    "accepted": "trpo",
    "cg": "trpo",
    "env_steps": "env",
    "actor_restarts": "faults",
}


def tensorboard_tag(column: str) -> str:
    for prefix, group in _GROUPS.items():
        if column.startswith(prefix):
            return f"{group}/{column}"
    if column.endswith("_s"):
        return f"time/{column}"
    return f"misc/{column}"


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of a metrics CSV; blank or cut-off lines (a killed writer) are skipped."""
    with path.open(newline="") as handle:
        lines = list(csv.reader(handle))
    if not lines:
        return [], []
    columns = lines[0]
    rows = []
    for values in lines[1:]:
        if len(values) != len(columns):
            continue  # a blank line, or a row cut off by a killed process
        row = dict(zip(columns, values))
        if row.get("iteration", "").isdigit():
            rows.append(row)
    return columns, rows


class MetricsLogger:
    """Appends rows to `metrics.csv` and writes each value as a TensorBoard scalar.

    A resumed run (`resume_from` = the first iteration it runs) first drops the
    rows and TensorBoard events of iterations >= resume_from, logged after the
    checkpoint it resumes from. When a row brings columns the file does not have
    (a run continued by a newer metarl), the file is rewritten with them added,
    empty in the older rows.
    """

    def __init__(self, run_dir: Path, resume_from: int = 0):
        self.path = run_dir / "metrics.csv"
        self.columns: list[str] = []
        self.rows: list[dict[str, str]] = []
        if self.path.exists() and self.path.stat().st_size > 0:
            self.columns, rows = read_rows(self.path)
            self.rows = [r for r in rows if int(r["iteration"]) < resume_from]
            self._rewrite()
        purge = {"purge_step": resume_from} if resume_from > 0 else {}
        self.tensorboard_dir = run_dir / "tensorboard"
        with writing(self.tensorboard_dir):
            self.writer = SummaryWriter(log_dir=str(self.tensorboard_dir), **purge)

    def _rewrite(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        with writing(self.path):
            temporary.write_text(buffer.getvalue())
            temporary.replace(self.path)

    def log(self, row: dict) -> None:
        """Append the row; a stop signal arriving meanwhile is raised after it (see runtime)."""
        with signals_deferred():
            self._log(row)

    def _log(self, row: dict) -> None:
        text = {column: _format(value) for column, value in row.items()}
        new_columns = [c for c in row if c not in self.columns]
        if new_columns:
            self.columns += new_columns
            self.rows.append(text)
            self._rewrite()
        else:
            buffer = io.StringIO()
            csv.DictWriter(buffer, self.columns, restval="", lineterminator="\n").writerow(text)
            with writing(self.path), self.path.open("a") as handle:
                handle.write(buffer.getvalue())  # one write: a stop cannot split the row
            self.rows.append(text)
        step = int(row["iteration"])
        with writing(self.tensorboard_dir):  # its writer thread's errors surface here
            for column, value in row.items():
                if column != "iteration" and isinstance(value, int | float):
                    self.writer.add_scalar(tensorboard_tag(column), value, step)
            self.writer.flush()

    def close(self) -> None:
        with signals_deferred():
            self.writer.close()


def _format(value) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)
