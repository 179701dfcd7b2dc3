"""Per-iteration metrics: one CSV row and the same scalars in TensorBoard."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

# CSV column -> TensorBoard tag group
_GROUPS = {
    "return": "returns",
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


class MetricsLogger:
    """Appends rows to `metrics.csv` and writes each value as a TensorBoard scalar.

    The CSV header is fixed by the first row. A resumed run (`resume_from` = the
    first iteration it runs) first drops the rows and TensorBoard events of
    iterations >= resume_from, logged after the checkpoint it resumes from.
    """

    def __init__(self, run_dir: Path, resume_from: int = 0):
        self.path = run_dir / "metrics.csv"
        self.columns: list[str] | None = None
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open(newline="") as handle:
                rows = list(csv.reader(handle))
            self.columns = rows[0]
            kept = [r for r in rows[1:] if int(r[self.columns.index("iteration")]) < resume_from]
            with self.path.open("w", newline="") as handle:
                csv.writer(handle).writerows([self.columns, *kept])
        purge = {"purge_step": resume_from} if resume_from > 0 else {}
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), **purge)

    def log(self, row: dict) -> None:
        if self.columns is None:
            self.columns = list(row)
            with self.path.open("w", newline="") as handle:
                csv.writer(handle).writerow(self.columns)
        missing = set(self.columns) ^ set(row)
        assert not missing, f"metrics row columns changed: {sorted(missing)}"
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow([_format(row[c]) for c in self.columns])
        step = int(row["iteration"])
        for column, value in row.items():
            if column != "iteration" and isinstance(value, int | float):
                self.writer.add_scalar(tensorboard_tag(column), value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _format(value) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)
