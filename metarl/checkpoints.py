"""Checkpoint files: written atomically, verified before anything is loaded.

A checkpoint is a dict saved with `torch.save`, wrapped in a small header
(magic, format version, length and SHA-256 of the payload). It is written to a
temporary file in the same directory, flushed to disk and renamed over the
target, so a crash while writing leaves the previous checkpoint intact; a
truncated or corrupted file fails the length/hash check and is refused whole.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import torch

import metarl

MAGIC = b"METARL-CKPT\n"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint cannot be used: missing, corrupt, or from an incompatible version/config."""


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Atomically write `payload` (plus metarl's version) to `path`."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save({**payload, "metarl_version": metarl.__version__}, buffer)
    data = buffer.getvalue()
    header = b"%s%d %d %s\n" % (
        MAGIC,
        FORMAT_VERSION,
        len(data),
        hashlib.sha256(data).hexdigest().encode(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(header)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict:
    """The payload of a checkpoint file, after checking its header, length and hash."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    raw = path.read_bytes()
    if not raw.startswith(MAGIC):
        raise CheckpointError(f"{path} is not a metarl checkpoint")
    header_end = raw.find(b"\n", len(MAGIC))
    try:
        version, length, digest = raw[len(MAGIC) : header_end].split()
        version, length = int(version), int(length)
    except ValueError:
        raise CheckpointError(f"{path}: corrupt checkpoint header") from None
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {version}, this metarl ({metarl.__version__}) "
            f"reads format {FORMAT_VERSION}"
        )
    data = raw[header_end + 1 :]
    if len(data) != length:
        raise CheckpointError(
            f"{path}: truncated checkpoint ({len(data)} of {length} bytes); "
            "use an earlier checkpoint"
        )
    if hashlib.sha256(data).hexdigest().encode() != digest:
        raise CheckpointError(f"{path}: corrupt checkpoint (hash mismatch)")
    return torch.load(io.BytesIO(data), weights_only=False)
