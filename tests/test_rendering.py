"""`metarl render`: panels of the policy before and after adaptation, for every env family.

Frames are rendered for real (MuJoCo offscreen with MUJOCO_GL=egl, matplotlib for
Navigation2D) and read back: their count, their size, and that each panel shows
a picture and its caption (not a blank image).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import small_navigation_config

from metarl.cli import main
from metarl.config import TrainConfig
from metarl.config_validation import config_from_dict
from metarl.experiment import build_policy
from metarl.rendering import render_adaptation
from metarl.trainer import train
from metarl.video import CAPTION_HEIGHT, read_video
from metarl_envs.meta_world import missing_extra

os.environ.setdefault("MUJOCO_GL", "egl")

SIZE = 48


def assert_panels_drawn(frames: list[np.ndarray], count: int, panels: int) -> None:
    assert len(frames) == count
    assert frames[0].shape == (SIZE + CAPTION_HEIGHT, SIZE * panels, 3)
    for frame in (frames[0], frames[-1]):
        for p in range(panels):
            panel = frame[:, p * SIZE : (p + 1) * SIZE].astype(float)
            caption, picture = panel[:CAPTION_HEIGHT], panel[CAPTION_HEIGHT:]
            assert picture.std() > 10, "a blank panel"  # a scene, not one flat colour
            assert (caption < 100).any() and (caption > 200).any()  # black text on white


def render(config, steps, tmp_path, name, max_frames=4):
    policy = build_policy(config)
    path, episodes = render_adaptation(
        policy, config, steps, tmp_path / name, rollouts=2, size=SIZE, max_frames=max_frames
    )
    return read_video(path), episodes


def test_navigation_renders_the_path_toward_the_goal(tmp_path):
    config = small_navigation_config(horizon=8)
    frames, episodes = render(config, [0, 1, 2], tmp_path, "nav.gif")
    # horizon 8 in at most 4 frames: every 2nd step and the last state, unless it ended early
    lengths = [len(e.frames) for e in episodes]
    assert all(2 <= n <= 5 for n in lengths)
    assert_panels_drawn(frames, max(lengths), panels=3)
    assert episodes[0].success is None
    # the adapted policies act differently: their paths (and returns) differ from theta's
    assert len({round(e.total_return, 6) for e in episodes}) == 3


def test_halfcheetah_renders_offscreen(tmp_path):
    config = small_navigation_config(env="metarl/HalfCheetahDir-v0", horizon=6)
    frames, episodes = render(config, [0, 1], tmp_path, "cheetah.gif", max_frames=3)
    assert [len(e.frames) for e in episodes] == [4, 4]  # steps 0, 2, 4 and the last state
    assert_panels_drawn(frames, 4, panels=2)
    assert not np.array_equal(episodes[0].frames[-1], episodes[1].frames[-1])


@pytest.mark.skipif(missing_extra() is not None, reason=f"Meta-World extra: {missing_extra()}")
def test_metaworld_renders_with_success_in_the_caption(tmp_path):
    config = config_from_dict(
        TrainConfig,
        {"env": "metarl/ML1-reach-v3", "horizon": 4, "hidden_sizes": [8], "rollouts_per_task": 2},
    )
    frames, episodes = render(config, [0, 1], tmp_path, "reach.gif")
    assert_panels_drawn(frames, 5, panels=2)
    assert all(e.success in (True, False) for e in episodes)


@pytest.mark.skipif(
    importlib.util.find_spec("imageio_ffmpeg") is None, reason='MP4: pip install -e ".[video]"'
)
def test_mp4_has_the_same_frames(tmp_path):
    config = small_navigation_config(horizon=6)
    gif, _ = render(config, [0, 1], tmp_path, "nav.gif")
    mp4, _ = render(config, [0, 1], tmp_path, "nav.mp4")
    assert len(mp4) == len(gif) and mp4[0].shape == gif[0].shape
    # lossy H.264: close to the GIF's pixels on average, not equal
    assert np.abs(mp4[-1].astype(float) - gif[-1].astype(float)).mean() < 12


def test_cli_renders_a_trained_run(tmp_path, capsys):
    run_dir = train(small_navigation_config(iterations=1), tmp_path / "run", show_progress=False)
    out = tmp_path / "adapt.gif"
    args = ["render", str(run_dir), "--steps", "0,1", "--size", str(SIZE), "-o", str(out)]
    assert main([*args, "--max-frames", "5", "--rollouts", "2"]) == 0
    printed = capsys.readouterr().out
    assert "0 adaptation steps: return" in printed and f"wrote {out}" in printed
    assert_panels_drawn(read_video(out), len(read_video(out)), panels=2)
    assert main(["render", str(run_dir), "--steps", "0,x", "-o", str(out)]) == 2
    assert main(["render", str(run_dir), "-o", str(tmp_path / "a.avi")]) == 2
    errors = capsys.readouterr().err
    assert "--steps '0,x'" in errors and "must end in .gif or .mp4" in errors


def test_render_without_offscreen_gl_stops_before_any_work(tmp_path):
    config = small_navigation_config(env="metarl/HalfCheetahDir-v0", horizon=3, iterations=1)
    run_dir = train(config, tmp_path / "run", show_progress=False)
    out = tmp_path / "adapt.gif"
    command = [sys.executable, "-m", "metarl.cli", "render", str(run_dir), "-o", str(out)]
    environment = {**os.environ, "MUJOCO_GL": "no-such-backend"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    assert result.returncode == 2 and not out.exists()
    assert result.stderr.startswith("metarl: error: offscreen rendering failed")
    assert "libegl1" in result.stderr and "libosmesa6" in result.stderr
