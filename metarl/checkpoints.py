"""Checkpoint files: written atomically, verified before anything is loaded, loaded without code.

A checkpoint is a dict of tensors and plain Python values (str, int, float, bool,
None, lists, tuples, dicts) saved with `torch.save`, wrapped in a small header
(magic, format version, length and SHA-256 of the payload). It is written to a
temporary file in the same directory, flushed to disk and renamed over the
target, so a crash while writing leaves the previous checkpoint intact; a
truncated or corrupted file fails the length/hash check and is refused whole.

Loading never runs code: the payload is read with `torch.load(weights_only=True)`,
which accepts tensors and plain values only, so a crafted file (a pickle that
calls a function) is refused. The hash detects corruption, not tampering. Tensors load
onto the CPU (`map_location`), so a machine without a GPU reads every checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

import metarl
from metarl.run_dir import writing

MAGIC = b"METARL-CKPT\n"
FORMAT_VERSION = 2  # 2: payloads of tensors and plain values, loaded with weights_only=True


class CheckpointError(ValueError):
    """A checkpoint cannot be used: missing, corrupt, unsafe, or from an incompatible version."""


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Atomically write `payload` (plus metarl's version) to `path`."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(
        {
            **payload,
            "metarl_version": metarl.__version__,
            "algorithm_version": metarl.ALGORITHM_VERSION,
        },
        buffer,
    )
    data = buffer.getvalue()
    header = b"%s%d %d %s\n" % (
        MAGIC,
        FORMAT_VERSION,
        len(data),
        hashlib.sha256(data).hexdigest().encode(),
    )
    with writing(path):  # a full disk: RunFileError naming the checkpoint; the old one stays
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
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read: {error}") from None
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
            f"reads format {FORMAT_VERSION} only"
            + (
                " (format 1 files are loaded by running pickled code; retrain)"
                if version == 1
                else ""
            )
        )
    data = raw[header_end + 1 :]
    if len(data) != length:
        raise CheckpointError(
            f"{path}: truncated checkpoint ({len(data)} of {length} bytes); "
            "use an earlier checkpoint"
        )
    if hashlib.sha256(data).hexdigest().encode() != digest:
        raise CheckpointError(f"{path}: corrupt checkpoint (hash mismatch)")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"{path}: refused: it holds more than tensors and plain values, and loading it "
            f"would run code ({first_line})"
        ) from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a metarl checkpoint payload")
    return payload


def global_rng_state() -> dict:
    """The global torch, numpy and Python RNG states as tensors and plain values."""
    name, keys, position, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }


def set_global_rng_state(state: dict) -> None:
    """Restore what `global_rng_state` returned."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
