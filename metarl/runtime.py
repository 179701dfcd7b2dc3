"""Process settings: torch threads and the memory allocator (speed on CPUs), the learner's
device (and CPU copies of what checkpoints hold), the machine's memory (to refuse a config
that cannot fit), stop signals."""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from metarl.config_validation import ConfigError

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


def learner_device(name: str, key: str = "key 'device'") -> torch.device:
    """The torch device for a config's `device` key: auto (CUDA where available), cpu or cuda.

    cuda where torch sees no CUDA device is a ConfigError naming `key` (the config key, or
    a command-line option), raised before any work rather than deep inside the first step.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"{key}: cuda, but torch sees no CUDA device here (a CPU build of torch, "
            "or no GPU); use auto or cpu"
        )
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"{key}: {name!r} is not one of ['auto', 'cpu', 'cuda']")
    return torch.device(name)


def to_cpu(value):
    """`value` (a state dict, an optimizer state, nested dicts and lists) with every tensor
    copied to the CPU: what checkpoints hold, so that a machine without a GPU loads them."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        result = type(value)((k, to_cpu(v)) for k, v in value.items())
        if hasattr(value, "__dict__"):  # a state dict's _metadata (module versions)
            result.__dict__.update(copy.deepcopy(value.__dict__))
        return result
    if isinstance(value, list | tuple):
        return type(value)(to_cpu(v) for v in value)
    return copy.deepcopy(value)


def machine_memory_bytes() -> int:
    """Physical memory of this machine in bytes (0 where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def check_fits_in_memory(needed_bytes: int, what: str, keys: str) -> None:
    """ConfigError if `needed_bytes` (an estimate, at least) exceeds this machine's memory."""
    available = machine_memory_bytes()
    if available and needed_bytes > available:
        raise ConfigError(
            f"{what} need at least {needed_bytes / 2**30:,.1f} GiB of memory; this machine has "
            f"{available / 2**30:,.1f} GiB: lower {keys}"
        )


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
    def reason(self) -> str:
        """What stopped the job, for its last message."""
        names = {signal.SIGINT: "interrupted (Ctrl-C)", signal.SIGTERM: "stopped by SIGTERM"}
        return names.get(
            self.signal_number, f"stopped by {signal.Signals(self.signal_number).name}"
        )

    @property
    def exit_code(self) -> int:
        return 128 + self.signal_number  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class _Deferral:
    depth = 0  # signals_deferred() sections the main thread is in
    pending: int | None = None  # the stop signal that arrived inside one
    requested: int | None = None  # the stop signal stop_on_signals' handler took, raised or not
    taken: int | None = None  # the first stop any handler took in this process; never cleared


def _take_stop(signal_number: int) -> None:
    """A handler takes a stop: note it, and raise it unless a deferred section is running."""
    _Deferral.requested = signal_number
    if _Deferral.taken is None:
        _Deferral.taken = signal_number
    if _Deferral.depth:  # inside signals_deferred(): raised when that section ends
        _Deferral.pending = signal_number
        return
    raise StopRequested(signal_number)


def _note_repeat(signal_number: int, doing: str) -> None:
    print(
        f"\n{signal.Signals(signal_number).name} again: already stopping, {doing}",
        file=sys.stderr,
        flush=True,
    )


def raise_lost_stop() -> None:
    """Raise the stop a signal asked for if its `StopRequested` never reached the job.

    The handler raises where the main thread happens to be. Code that ignores
    exceptions can swallow it there: a `__del__` method or a finalizer run by the
    garbage collector (Python prints "Exception ignored in ..." and goes on). The
    job would then run on, and further signals only say "already stopping". Long
    jobs call this at their safe points (the start of each iteration).
    """
    if _Deferral.requested is not None and _Deferral.depth == 0:
        raise StopRequested(_Deferral.requested)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Run the body to its end: a stop signal arriving inside raises when the body is done.

    For code that must not be cut in the middle, such as a TensorBoard write: a
    KeyboardInterrupt inside its queue leaves the writer thread waiting for ever,
    and the process hangs at exit (seen with a Ctrl-C during `flush()`).
    """
    _Deferral.depth += 1
    try:
        yield
    finally:
        _Deferral.depth -= 1
    if _Deferral.depth == 0 and _Deferral.pending is not None:
        number, _Deferral.pending = _Deferral.pending, None
        raise StopRequested(number)


@contextmanager
def stop_on_signals(already_stopping: bool = False) -> Iterator[None]:
    """SIGINT and SIGTERM raise `StopRequested` once; later ones are noted, not raised.

    A job's cleanup (writing its checkpoint) then runs to the end however often the
    user presses Ctrl-C or a scheduler repeats SIGTERM: run the cleanup inside
    `stop_on_signals(already_stopping=True)`, where no signal raises. Handlers are
    restored on exit. Inside `signals_deferred()` the stop waits for the section's
    end. Outside the main thread (where Python cannot set handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = already_stopping

    def handler(signal_number, frame):
        nonlocal stopping
        if stopping:
            _note_repeat(signal_number, "writing the checkpoint")
            return
        stopping = True
        _take_stop(signal_number)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    requested, _Deferral.requested = _Deferral.requested, None  # cleanup: nothing to re-raise
    try:
        yield
    finally:
        _Deferral.requested = requested
        for number, old in previous.items():
            signal.signal(number, old)


def stop_process_on_signals() -> None:
    """A command-line process's own handlers, under those `stop_on_signals` sets and restores.

    Until a stop is taken, SIGINT and SIGTERM raise `StopRequested` (SIGTERM too, so
    that it ends a command as Ctrl-C does); after one, anywhere in the process, they
    are noted and ignored. Without this, `stop_on_signals` restores the default
    handlers as the stop leaves the trainer, and a repeated SIGTERM landing in the
    milliseconds before exit killed the process (exit -15 instead of 130 or 143).
    Never restored: call it once, at the start of a process that ends with the command.
    """

    def handler(signal_number, frame):
        if _Deferral.taken is not None:
            _note_repeat(signal_number, "exiting")
            return
        _take_stop(signal_number)

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, handler)


def ignore_stops_if_stopping() -> None:
    """After a stop, ignore further signals outright, for the interpreter's shutdown.

    Python resets its handlers to the default while it finalizes, which would let one
    more SIGTERM kill a process that has already stopped cleanly; ignored handlers stay.
    """
    if _Deferral.taken is not None:
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_IGN)
