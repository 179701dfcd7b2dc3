"""Side-by-side video panels with captions, written as GIF (pillow) or MP4 (imageio-ffmpeg)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CAPTION_HEIGHT = 30  # two lines of pillow's default font
FORMATS = (".gif", ".mp4")


class VideoError(ValueError):
    """A video cannot be written as asked (format, missing package); the message says why."""


def check_output(path: Path) -> None:
    """Raise VideoError before any work when `path` cannot be written as a video here."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise VideoError(f"-o {path}: the video must end in {' or '.join(FORMATS)}")
    if suffix == ".mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise VideoError(
            f'-o {path}: MP4 needs imageio-ffmpeg: pip install -e ".[video]" (or write a .gif)'
        )


def captioned(frame: np.ndarray, caption: str) -> np.ndarray:
    """The frame [H, W, 3] uint8 under a white strip with the caption (up to 2 lines) in black."""
    height, width = frame.shape[:2]
    strip = Image.new("RGB", (width, CAPTION_HEIGHT), "white")
    draw = ImageDraw.Draw(strip)
    draw.multiline_text((4, 3), caption, fill="black", font=ImageFont.load_default(), spacing=2)
    return np.concatenate([np.asarray(strip), frame], axis=0)


def side_by_side(panels: list[list[np.ndarray]], captions: list[str]) -> list[np.ndarray]:
    """One video of the panels next to each other, each under its caption.

    A panel whose episode ended earlier repeats its last frame; all frames of a
    panel have the same size.
    """
    length = max(len(frames) for frames in panels)
    padded = [frames + [frames[-1]] * (length - len(frames)) for frames in panels]
    return [
        np.concatenate(
            [captioned(frames[t], caption) for frames, caption in zip(padded, captions)], axis=1
        )
        for t in range(length)
    ]


def write_video(frames: list[np.ndarray], path: Path, fps: int) -> Path:
    """Frames [H, W, 3] uint8 as a looping GIF or an H.264 MP4, chosen by the suffix."""
    path = Path(path)
    check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        images = [Image.fromarray(frame) for frame in frames]
        duration_ms = max(20, round(1000 / fps))  # GIF delays are in 10 ms units
        images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    else:
        import imageio.v2 as imageio

        # H.264 wants even sizes; macro_block_size=2 pads by at most one pixel
        imageio.mimwrite(path, frames, fps=fps, macro_block_size=2)
    return path


def read_video(path: Path) -> list[np.ndarray]:
    """The frames of a GIF (pillow) or MP4 (imageio) as [H, W, 3] uint8 arrays."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        with Image.open(path) as image:
            frames = []
            for index in range(image.n_frames):
                image.seek(index)
                frames.append(np.asarray(image.convert("RGB")))
            return frames
    import imageio.v2 as imageio

    return [np.asarray(frame) for frame in imageio.mimread(path, memtest=False)]
