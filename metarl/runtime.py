"""Process settings: torch threads and the memory allocator (speed on CPUs), stop signals."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed tensor memory instead of returning it to the OS.

    By default glibc serves each large tensor with a fresh mmap and unmaps it when
    freed, so every intermediate of a backward pass pays page faults to zero new
    pages; a meta-gradient here then takes about 1.4x as long (measured by
    benchmarks/meta_iteration.py). Returns False where glibc is not the allocator.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)  # the largest glibc accepts
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    ok &= mallopt(_M_TOP_PAD, 256 * 1024 * 1024)
    return bool(ok)


def learner_device(name: str) -> torch.device:
    """The torch device for a config's `device` key: auto, cpu or cuda."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "key 'device': cuda, but torch sees no CUDA device here (a CPU build of torch, "
            "or no GPU); use device: auto or cpu"
        )
    return torch.device(name)


def set_torch_threads(threads: int) -> int:
    """Use `threads` intra-op threads (0: one per core); returns the number set."""
    count = threads if threads > 0 else (os.cpu_count() or 1)
    torch.set_num_threads(count)
    return count


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the body with `threads` intra-op threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class StopRequested(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM asked a long job to stop; it writes what it must and exits."""

    def __init__(self, signal_number: int):
        self.signal_number = signal_number
        super().__init__(signal.Signals(signal_number).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signal_number  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


@contextmanager
def stop_on_signals(already_stopping: bool = False) -> Iterator[None]:
    """SIGINT and SIGTERM raise `StopRequested` once; later ones are noted, not raised.

    A job's cleanup (writing its checkpoint) then runs to the end however often the
    user presses Ctrl-C or a scheduler repeats SIGTERM: run the cleanup inside
    `stop_on_signals(already_stopping=True)`, where no signal raises. Handlers are
    restored on exit. Outside the main thread (where Python cannot set handlers)
    this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = already_stopping

    def handler(signal_number, frame):
        nonlocal stopping
        if stopping:
            print(
                f"\n{signal.Signals(signal_number).name} again: already stopping, "
                "writing the checkpoint",
                file=sys.stderr,
                flush=True,
            )
            return
        stopping = True
        raise StopRequested(signal_number)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
