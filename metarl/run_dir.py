"""Run directories: created safely, held by one process at a time, written file by file.

A training process (train or resume) holds an exclusive `fcntl.flock` on
`RUN_DIR/.lock` for its whole life, with its PID written inside. A second
process on the same directory gets one message naming that PID. The kernel
drops the lock when its holder exits, however it exits, so a lock file left by
a killed process never blocks a resume.

A file that cannot be written (a full disk, a read-only folder) raises
`RunFileError` naming it; small files are replaced whole (`write_text_file`).
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = ".lock"


class RunDirError(ValueError):
    """A run directory cannot be used: in use by another process, or not a directory."""


class RunDirLock:
    """Exclusive use of a run directory; a context manager (or acquire/release)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunDirLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            holder = _read_pid(self.path)
            raise RunDirError(
                f"run directory {str(self.run_dir)!r} is in use by another metarl process"
                + (f" (PID {holder})" if holder else "")
                + "; wait for it to finish or stop it (Ctrl-C or kill -INT), then resume"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def new_run_dir(run_dir: str | Path) -> Path:
    """Check that `run_dir` can hold a new run (absent or an empty directory); create it."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {str(run_dir)!r} is a file, not a directory")
    if run_dir.is_dir() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        raise RunDirError(f"run directory {str(run_dir)!r} exists and is not empty")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunDirError(f"run directory {str(run_dir)!r} cannot be created: {error}") from None
    return run_dir


def existing_run_dir(run_dir: str | Path) -> Path:
    """Check that `run_dir` is a directory (to resume); the message names what is wrong."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RunDirError(f"run directory {str(run_dir)!r} does not exist")
    if not run_dir.is_dir():
        raise RunDirError(f"{str(run_dir)!r} is a file, not a run directory")
    return run_dir


class RunFileError(OSError):
    """A run file could not be written; str() is `cannot write PATH: REASON`."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an OSError of the body into a RunFileError naming `path`.

    (A write that fails for a full disk names no file; one to a temporary file names
    that file, not the one the user knows.)
    """
    try:
        yield
    except RunFileError:
        raise
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise RunFileError(error.errno, reason, str(path)) from error


def writable_dir(path: str | Path) -> Path:
    """`path` as a directory this process can write in (created if missing); else RunFileError."""
    path = Path(path)
    with writing(path):
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "it is a file, not a directory")
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".metarl-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    return path


def write_text_file(path: str | Path, text: str) -> None:
    """Replace `path` with `text` whole: a failure leaves the previous file as it was."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    with writing(path):
        try:
            temporary.write_text(text)
            temporary.replace(path)
        finally:
            temporary.unlink(missing_ok=True)
