"""Omniglot N-way K-shot classification tasks read from the official zip layout.

The zips (`images_background*.zip`, ...) hold `<top>/<alphabet>/<character>/<drawing>.png`,
20 drawings of 105x105 pixels per character. Images are resized to 28x28 and
inverted (strokes 1, background 0). Every character rotated by 0, 90, 180 or 270
degrees is a class of its own; characters (with all four of their rotations) are
split into disjoint meta-train, meta-validation and meta-test sets by a seeded
permutation, so no character seen in training appears rotated at test time.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from metarl.config_validation import ConfigError
from metarl.supervised.tasks import TaskBatch

IMAGE_SIZE = 28
DRAWINGS = 20
ROTATIONS = 4
SPLITS = ("train", "val", "test")


class OmniglotDataError(ConfigError):
    """The Omniglot data path is missing or does not hold the official zip layout."""


@dataclass(frozen=True)
class OmniglotImages:
    """All drawings: images [characters, 20, 28, 28] float32 in [0, 1]; one name each."""

    images: torch.Tensor
    names: tuple[str, ...]  # "<alphabet>/<character>" (prefixed by the zip's top folder)

    @property
    def num_classes(self) -> int:
        return len(self.names) * ROTATIONS


def zip_files(data_path: str | Path) -> list[Path]:
    """The Omniglot zips at `data_path`: the path itself if a zip, else its images_*.zip."""
    path = Path(data_path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(path.glob("images_*.zip"))
    else:
        raise OmniglotDataError(f"key 'data_path': {str(path)!r} does not exist")
    if not files:
        raise OmniglotDataError(f"key 'data_path': no Omniglot images_*.zip in {str(path)!r}")
    return files


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image  # pillow comes with matplotlib, a dependency

    with Image.open(io.BytesIO(data)) as image:
        small = image.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)
        return 1.0 - np.asarray(small, dtype=np.float32) / 255.0


def _read_zip(path: Path) -> dict[str, list[np.ndarray]]:
    """character name -> its decoded drawings, in file-name order."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise OmniglotDataError(
            f"key 'data_path': {path} is not a readable zip ({error})"
        ) from None
    characters: dict[str, list[np.ndarray]] = {}
    with archive:
        for name in sorted(n for n in archive.namelist() if n.lower().endswith(".png")):
            parts = name.split("/")
            if len(parts) != 4:
                raise OmniglotDataError(
                    f"key 'data_path': {path} entry {name!r} is not "
                    "<top>/<alphabet>/<character>/<drawing>.png"
                )
            try:
                image = _decode(archive.read(name))
            except Exception as error:  # PIL raises several types for bad image data
                raise OmniglotDataError(
                    f"key 'data_path': {path} entry {name!r} is not a readable image ({error})"
                ) from None
            characters.setdefault("/".join(parts[:3]), []).append(image)
    if not characters:
        raise OmniglotDataError(f"key 'data_path': {path} holds no .png drawings")
    return characters


@lru_cache(maxsize=4)
def _load(paths: tuple[Path, ...]) -> OmniglotImages:
    characters: dict[str, list[np.ndarray]] = {}
    for path in paths:
        characters.update(_read_zip(path))
    for name, drawings in characters.items():
        if len(drawings) != DRAWINGS:
            raise OmniglotDataError(
                f"key 'data_path': character {name!r} has {len(drawings)} drawings, "
                f"expected {DRAWINGS}"
            )
    names = tuple(sorted(characters))
    images = torch.from_numpy(np.stack([np.stack(characters[n]) for n in names]))
    return OmniglotImages(images, names)


def load_omniglot(data_path: str | Path) -> OmniglotImages:
    """Decode every drawing of the zips at `data_path` (cached per process)."""
    return _load(tuple(p.resolve() for p in zip_files(data_path)))


def split_classes(num_characters: int, fractions: list[float], seed: int) -> dict[str, np.ndarray]:
    """Disjoint class ids (character * 4 + rotation) of the meta-train/-validation/-test sets.

    Characters are permuted by `seed` and cut by `fractions` (normalized to sum to 1);
    each character brings its four rotations into its split.
    """
    weights = np.asarray(fractions, dtype=np.float64) / np.sum(fractions)
    order = np.random.default_rng(seed).permutation(num_characters)
    cuts = np.round(np.cumsum(weights)[:-1] * num_characters).astype(int)
    rotations = np.arange(ROTATIONS)
    return {
        split: np.sort((chars[:, None] * ROTATIONS + rotations).ravel())
        for split, chars in zip(SPLITS, np.split(order, cuts))
    }


def sample_omniglot_tasks(
    data: OmniglotImages,
    classes: np.ndarray,
    rng: np.random.Generator,
    num_tasks: int,
    ways: int,
    shots: int,
    query: int,
) -> TaskBatch:
    """T tasks of N classes drawn from `classes`, K support and `query` drawings per class.

    Labels 0..N-1 are given to the classes in a random order, so a class has no fixed
    label across tasks. Inputs are [T, N*K, 1, 28, 28] (support) and [T, N*query, ...].
    """
    if len(classes) < ways:
        raise OmniglotDataError(
            f"key 'ways': {ways}-way tasks need {ways} classes, this split has {len(classes)}"
        )
    chosen = np.stack([rng.choice(classes, size=ways, replace=False) for _ in range(num_tasks)])
    drawings = np.stack(
        [rng.permutation(DRAWINGS)[: shots + query] for _ in range(num_tasks * ways)]
    ).reshape(num_tasks, ways, shots + query)
    characters = torch.as_tensor(chosen // ROTATIONS)
    images = data.images[characters[:, :, None], torch.as_tensor(drawings)]  # [T, N, K+Q, H, W]
    rotation = torch.as_tensor(chosen % ROTATIONS)
    for k in range(1, ROTATIONS):
        mask = rotation == k
        images[mask] = torch.rot90(images[mask], k, dims=(-2, -1))
    labels = torch.arange(ways).view(1, ways, 1).expand(num_tasks, ways, shots + query)

    def flat(t: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        part = t[:, :, start:stop]
        return part.reshape(num_tasks, -1, *part.shape[3:])

    return TaskBatch(
        flat(images, 0, shots).unsqueeze(2),
        flat(labels, 0, shots),
        flat(images, shots, shots + query).unsqueeze(2),
        flat(labels, shots, shots + query),
    )
