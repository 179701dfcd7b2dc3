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

    The CSV header is fixed by the first row; a resumed run appends to the same file.
    """

    def __init__(self, run_dir: Path):
        self.path = run_dir / "metrics.csv"
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.columns: list[str] | None = None
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open() as handle:
                self.columns = next(csv.reader(handle))

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
