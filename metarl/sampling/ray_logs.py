"""Where a local Ray started for a run keeps its files: inside the run directory.

A local Ray writes its logs and sockets under a temp dir; metarl makes that
`<run dir>/ray`, so the run's Ray logs stay with the run. Ray puts sockets at
`<temp dir>/session_<~42 chars>/sockets/<name>`, and AF_UNIX paths are limited to
107 bytes: when the run directory's path is too long for that, Ray runs in a
short temp dir linked from `<run dir>/ray` and the logs are moved there when Ray
has stopped. The driver's own Ray log lines (warnings about the local Ray it
started, such as the token-authentication notice) go to `<run dir>/ray/driver.log`
instead of the terminal; errors still reach the terminal.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

_SOCKET_PATH_MAX = 107  # AF_UNIX; Ray puts sockets at <temp dir>/session_<~42>/sockets/<name>


def local_temp_dir(log_dir: Path | None) -> tuple[str | None, Path | None]:
    """(temp dir for ray.init, link to resolve at shutdown or None) for a run directory."""
    if log_dir is None:
        return None, None
    wanted = Path(log_dir).absolute() / "ray"
    if len(str(wanted)) + 64 <= _SOCKET_PATH_MAX:
        wanted.mkdir(parents=True, exist_ok=True)
        return str(wanted), None
    short = tempfile.mkdtemp(prefix="metarl-ray-")
    wanted.parent.mkdir(parents=True, exist_ok=True)
    if wanted.exists() or wanted.is_symlink():
        return short, None  # keep what is there; the logs stay in the temp dir
    wanted.symlink_to(short, target_is_directory=True)
    return short, wanted


def move_logs(link: Path) -> None:
    """Replace the link <run dir>/ray by the short temp dir it points to (Ray has stopped)."""
    source = Path(os.readlink(link))
    try:
        for sockets in source.glob("session_*/sockets"):
            shutil.rmtree(sockets, ignore_errors=True)  # dead sockets cannot be copied
        link.unlink()
        shutil.move(str(source), str(link))
        latest = link / "session_latest"
        if latest.is_symlink():  # it pointed into the temp dir
            session = Path(os.readlink(latest)).name
            latest.unlink()
            latest.symlink_to(session, target_is_directory=True)
    except OSError as error:
        logger.warning("Ray's logs stay in %s: %s", source, error)


class DriverLog:
    """Ray's driver-side log lines go to a file; only errors reach the terminal.

    Ray logs through the "ray" logger with its own stderr handler. While a local
    Ray started for a run is up, that handler passes errors only and a file
    handler keeps everything in `<log dir>/driver.log`.
    """

    def __init__(self, log_dir: Path | None):
        self.ray_logger = logging.getLogger("ray")
        self.file_handler: logging.Handler | None = None
        self.levels: dict[logging.Handler, int] = {}
        if log_dir is None:
            return
        log_dir.mkdir(parents=True, exist_ok=True)
        self.file_handler = logging.FileHandler(log_dir / "driver.log")
        self.file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        for handler in self.ray_logger.handlers:
            self.levels[handler] = handler.level
            handler.setLevel(logging.ERROR)
        self.ray_logger.addHandler(self.file_handler)

    def close(self) -> None:
        for handler, level in self.levels.items():
            handler.setLevel(level)
        if self.file_handler is not None:
            self.ray_logger.removeHandler(self.file_handler)
            self.file_handler.close()
            self.file_handler = None
