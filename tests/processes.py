"""Processes of this machine, read from /proc: what a Ray test started, and stopping it.

The Ray tests check that every process they start is gone when they end.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group, command line) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[2]), cmdline)
    return table


def command_line(table: dict[int, tuple[int, int, str]], pid: int) -> str:
    """A process's command line ("" if it was not there when the table was read)."""
    return table.get(pid, (0, 0, ""))[2]


def process_tree(groups: set[int] = frozenset(), roots: set[int] = frozenset()) -> set[int]:
    """The processes of these process groups, these root processes and all their descendants."""
    table = process_table()
    members = {pid for pid, (_, group, _) in table.items() if group in groups} | set(roots)
    while True:
        children = {pid for pid, (parent, _, _) in table.items() if parent in members}
        if children <= members:
            return members
        members |= children


def stop_processes(pids: set[int], grace_s: float = 5.0) -> set[int]:
    """SIGTERM, then SIGKILL what is left after `grace_s`; returns the pids still alive."""

    def alive() -> set[int]:
        table = process_table()
        return {pid for pid in pids if pid in table and not is_zombie(pid)}

    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        for pid in alive():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while alive() and time.monotonic() < deadline:
            time.sleep(0.1)
    return alive()


def is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"
