"""Connecting the driver to Ray: a local Ray started for the run, or an existing cluster.

`ray.init` retries an address where nothing answers for minutes, so a cluster
address is probed first (`check_reachable`) and fails within CONNECT_TIMEOUT_S,
naming the address. A local Ray started here lives in the run directory (see
`ray_logs`), and its liveness can be checked (`LocalRay.alive`): when its
raylet dies, Ray ends the driver process from C++ shortly after, so the sampler
stops first, through the trainer, which writes its checkpoint and says so. A
`ray_reaper.Reaper` ends a local Ray's processes should the driver die without
shutting it down.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import ray

from metarl.sampling import SamplingError
from metarl.sampling.ray_logs import DriverLog, local_temp_dir, move_logs
from metarl.sampling.ray_reaper import Reaper

CONNECT_TIMEOUT_S = 10.0  # a cluster address that does not answer within this fails
_HTTP2_PREFACE, _HTTP2_SETTINGS = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0x4


@dataclass
class Connection:
    """How this process is connected: whether it called ray.init, and a local Ray's files."""

    owns_ray: bool = False
    log_link: Path | None = None  # <run dir>/ray linking a short temp dir, moved at shutdown
    driver_log: DriverLog | None = None
    raylets: list[psutil.Process] = field(default_factory=list)  # a local Ray's raylet
    reaper: Reaper | None = None  # ends a local Ray's processes if this process dies

    def local_ray_alive(self) -> bool:
        """False when this process started a local Ray whose raylet has died."""
        return all(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in self.raylets)

    def close(self) -> None:
        if self.owns_ray and ray.is_initialized():
            ray.shutdown()  # stops a local Ray; only disconnects from a cluster
        self.owns_ray = False
        if self.reaper is not None:
            self.reaper.close()
            self.reaper = None
        if self.driver_log is not None:
            self.driver_log.close()
            self.driver_log = None
        if self.log_link is not None:
            move_logs(self.log_link)
            self.log_link = None


def connect(address: str | None, log_dir: Path | None, dashboard: bool) -> Connection:
    """Connect this process to Ray: a local Ray (address None) or the cluster at `address`.

    An existing connection (a caller's own ray.init) is used as it is and left open.
    """
    if ray.is_initialized():
        return Connection()
    quiet = dict(log_to_driver=False, logging_level=logging.WARNING)
    if address is None:
        temp_dir, link = local_temp_dir(log_dir)
        driver_log = DriverLog(None if log_dir is None else Path(log_dir) / "ray")
        try:
            with _callers_sigterm_handler_kept():
                ray.init(address="local", include_dashboard=dashboard, _temp_dir=temp_dir, **quiet)
        except BaseException:
            driver_log.close()
            raise
        processes = psutil.Process().children(recursive=True)  # GCS, raylet, agents, ...
        raylets = [p for p in processes if "raylet" in _name(p)]
        return Connection(True, link, driver_log, raylets, Reaper(processes))
    check_reachable(address)
    try:
        with _callers_sigterm_handler_kept():
            ray.init(address=address, **quiet)
    except ConnectionError as error:  # not a Ray GCS, or it refused us (token authentication)
        raise SamplingError(
            f"ray_address {address!r}: {error}. Check the address; a cluster started "
            "by `ray start` uses token authentication: set RAY_AUTH_MODE=token here and give "
            "it the cluster's token (~/.ray/auth_token or RAY_AUTH_TOKEN)"
        ) from None
    return Connection(owns_ray=True)


@contextmanager
def _callers_sigterm_handler_kept() -> Iterator[None]:
    """Keep a SIGTERM handler the caller installed (the `metarl` command's) over `ray.init`.

    `ray.init` installs its own, `sys.exit(15)`: a SIGTERM while the run starts, or
    repeated after the trainer's stop, then ended the command with exit code 15 and
    no message. Without a caller's handler (the default), Ray's stays: it exits
    through Python, so Ray is shut down, where the default would kill the driver.
    """
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if callable(previous):
            signal.signal(signal.SIGTERM, previous)


def _name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.Error:
        return ""


def check_reachable(address: str) -> None:
    """Fail within CONNECT_TIMEOUT_S, naming the address, unless a gRPC server answers there.

    A Ray cluster's GCS (and a Ray client server) speaks gRPC: after the HTTP/2
    preface it sends a SETTINGS frame at once.
    """
    target = address.removeprefix("ray://")
    if target == "auto":
        # Ray has no public call that resolves "auto" to host:port without connecting
        # (ray.init would, with its minutes of retries): this private one reads the
        # address the local `ray start` recorded.
        from ray._private.services import canonicalize_bootstrap_address

        try:
            target = canonicalize_bootstrap_address("auto")
        except ConnectionError as error:
            raise SamplingError(f"ray_address 'auto': no running Ray cluster ({error})") from None
    host, _, port = target.rpartition(":")
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    try:
        with socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S) as conn:
            conn.sendall(_HTTP2_PREFACE)
            header = b""
            while len(header) < 9:  # length (3), type (1), flags (1), stream (4)
                conn.settimeout(max(deadline - time.monotonic(), 0.001))
                received = conn.recv(9 - len(header))
                if not received:
                    raise ConnectionError("connection closed without an answer")
                header += received
        if header[3] != _HTTP2_SETTINGS:
            raise ConnectionError("the server there does not speak gRPC")
    except (OSError, ValueError) as error:
        raise SamplingError(
            f"ray_address {address!r}: cannot reach a Ray cluster at {target} within "
            f"{CONNECT_TIMEOUT_S:g} s ({error or type(error).__name__}); "
            "start one with `ray start --head`"
        ) from None
