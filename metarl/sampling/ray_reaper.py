"""A watchdog that ends a local Ray's processes once the driver is gone, however it went.

When the driver dies without shutting Ray down (SIGKILL, the OOM killer, a crash),
Ray's fate-sharing (PR_SET_PDEATHSIG) ends the processes the driver started (GCS,
raylet, ...) at once and the workers notice within about 3 s, but the raylet's
agents (`ray::DashboardAgent`, `ray::RuntimeEnvAgent`) then spend 60 s trying to
report the raylet's death to the GCS that died with it (a timeout fixed inside
Ray's `publish_error_to_driver`) before they exit (measured: README, Ray sampler).

The reaper is a small process in a session of its own (a Ctrl-C or a signal to the
driver's process group does not reach it) that blocks reading a pipe from the
driver. The pipe closes when the driver exits, in any way; the reaper then kills
those of the recorded processes that are still alive. Each is recorded with its
start time, so a PID the system has since reused is never touched.
"""

from __future__ import annotations

import subprocess
import sys

import psutil

_REAPER = """
import sys
import psutil
recorded = [item.split("@") for item in sys.argv[1:]]
sys.stdin.buffer.read()  # returns at end of file: the driver has exited or let go
for pid, started in recorded:
    try:
        process = psutil.Process(int(pid))
        if abs(process.create_time() - float(started)) < 0.01:
            process.kill()
    except psutil.Error:
        pass
"""


class Reaper:
    """Kills `processes` when this process exits, or at `close()`, whichever comes first."""

    def __init__(self, processes: list[psutil.Process]):
        recorded = []
        for process in processes:
            try:
                recorded.append(f"{process.pid}@{process.create_time()!r}")
            except psutil.Error:
                continue  # already gone
        self.process = subprocess.Popen(
            [sys.executable, "-c", _REAPER, *recorded],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def close(self, timeout_s: float = 10.0) -> None:
        """Let the reaper kill what is left (after ray.shutdown(): nothing, normally)."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
