"""Videos of one held-out task: the meta-learned policy before and after k adaptation steps.

`metarl render CHECKPOINT --steps 0,1,3 -o adapt.gif` draws one held-out task
(evaluation's task stream, `--task-seed`), adapts the checkpoint's policy to it
as `metarl eval` does (inner step k on fresh rollouts of the current adapted
policy, with the config's `eval_step_sizes`), then plays one episode of the
policy after each requested number of steps with its mean action, and writes
the episodes side by side, each panel captioned with its return (and, on
Meta-World, whether it succeeded). MuJoCo envs render offscreen (MUJOCO_GL:
egl by default, or osmesa); Navigation2D is drawn with matplotlib.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from metarl.config import TrainConfig
from metarl.experiment import EVALUATION_STREAM, held_out_tasks, horizon_of, sampler_settings
from metarl.policies import Params, gaussian_mlp
from metarl.sampling.meta_batch import adapt_one_task
from metarl.sampling.rollouts import RolloutKey, make_vector_env, rollout
from metarl.video import side_by_side, write_video

GL_PACKAGES = (
    "libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri (MUJOCO_GL=egl) or libosmesa6 (MUJOCO_GL=osmesa)"
)


class RenderError(RuntimeError):
    """Offscreen rendering failed; the message names MUJOCO_GL and the system packages."""


def check_offscreen_gl(env_id: str) -> None:
    """Raise RenderError (naming MUJOCO_GL and the packages) unless MuJoCo can render here."""
    if env_id.startswith("metarl/Navigation2D"):
        return  # drawn by matplotlib
    gl = os.environ.get("MUJOCO_GL", "")
    try:
        import mujoco

        context = mujoco.GLContext(16, 16)
        context.make_current()
        context.free()
    except Exception as error:  # a missing library fails in several ways (import, context)
        raise RenderError(
            f"offscreen rendering failed with MUJOCO_GL={gl!r} ({type(error).__name__}: "
            f"{error}); install the Debian packages {GL_PACKAGES}"
        ) from error


@dataclass
class Episode:
    frames: list[np.ndarray]  # [size, size, 3] uint8 each
    total_return: float
    success: bool | None  # None: the env reports no success


def adapted_params(
    policy: nn.Module,
    config: TrainConfig,
    task: dict,
    steps: int,
    rollouts: int,
    seed: int,
) -> list[Params]:
    """The policy's parameters after 0..steps inner steps on `task`'s own rollouts."""
    sizes = config.eval_step_sizes
    step_sizes = tuple(sizes[min(k, len(sizes) - 1)] for k in range(steps))
    settings = sampler_settings(config, EVALUATION_STREAM, step_sizes, rollouts, seed)
    current = {name: p.detach() for name, p in policy.named_parameters()}
    found = [current]
    if steps == 0:
        return found
    vector_env = make_vector_env(config.env, rollouts, settings.horizon, settings.env_kwargs)
    try:
        for k in range(steps):
            key = RolloutKey(settings.seed, settings.stream, 0, phase=k)
            batch = rollout(
                vector_env, policy, current, [task], np.zeros(1, dtype=np.int64),
                rollouts, settings.horizon, key, settings.advantage,
            )  # fmt: skip
            current = adapt_one_task(policy, current, k > 0, batch, 0, k, settings)
            found.append({name: p[0] for name, p in current.items()})
    finally:
        vector_env.close()
    return found


def mean_actions(params: Params, activation: str):
    def act(observation: np.ndarray) -> np.ndarray:
        obs = torch.as_tensor(observation, dtype=torch.float32)[None]
        with torch.no_grad():
            mean, _ = gaussian_mlp(params, obs, activation)
        return mean[0].numpy()

    return act


def play_episode(config: TrainConfig, task: dict, act, size: int, stride: int) -> Episode:
    """One episode of `task` with actions `act(observation)`, every `stride`-th frame kept."""
    horizon = horizon_of(config)
    if config.env.startswith("metarl/Navigation2D"):
        env = gym.make(config.env, max_episode_steps=horizon)
    else:
        env = gym.make(
            config.env, max_episode_steps=horizon, render_mode="rgb_array", width=size, height=size
        )
    env.unwrapped.set_task(task)
    observation, _ = env.reset(seed=0)
    positions, frames, total, success = [np.array(observation[:2])], [], 0.0, None
    try:
        draw = _navigation_drawer(task, size) if env.render_mode is None else None
        for t in range(horizon):
            if t % stride == 0:
                frames.append(draw(positions) if draw else _render(env))
            observation, reward, terminated, truncated, info = env.step(act(observation))
            total += float(reward)
            positions.append(np.array(observation[:2]))
            if "success" in info:
                success = bool(success) or bool(info["success"])
            if terminated or truncated:
                break
        frames.append(draw(positions) if draw else _render(env))
    finally:
        env.close()
    return Episode(frames, total, success)


def _render(env) -> np.ndarray:
    try:
        frame = env.render()
    except Exception as error:  # MuJoCo's GL errors have several types
        gl = os.environ.get("MUJOCO_GL", "")
        raise RenderError(
            f"offscreen rendering failed with MUJOCO_GL={gl!r} ({type(error).__name__}: "
            f"{error}); install the Debian packages {GL_PACKAGES}"
        ) from error
    return np.ascontiguousarray(frame, dtype=np.uint8)


def _navigation_drawer(task: dict, size: int):
    """Frames of Navigation2D: the path so far toward the goal, drawn by matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    goal = task["goal"]

    def draw(positions: list[np.ndarray]) -> np.ndarray:
        figure = Figure(figsize=(size / 100, size / 100), dpi=100)
        canvas = FigureCanvasAgg(figure)
        axes = figure.add_axes((0, 0, 1, 1))
        axes.set_xlim(-0.6, 0.6), axes.set_ylim(-0.6, 0.6), axes.set_aspect("equal")
        axes.set_xticks([]), axes.set_yticks([])
        axes.add_patch(_square())
        path = np.array(positions)
        axes.plot(path[:, 0], path[:, 1], color="tab:blue", lw=2)
        axes.plot(*path[-1], "o", color="tab:blue", ms=7)
        axes.plot(*goal, "*", color="tab:red", ms=14)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()

    return draw


def _square():
    from matplotlib.patches import Rectangle

    return Rectangle((-0.5, -0.5), 1, 1, fill=False, ls="--", color="grey")


def render_adaptation(
    policy: nn.Module,
    config: TrainConfig,
    steps: list[int],
    out: Path,
    task_seed: int = 0,
    rollouts: int | None = None,
    size: int = 240,
    max_frames: int = 100,
    fps: int = 20,
) -> tuple[Path, list[Episode]]:
    """Render held-out task `task_seed` after each number of adaptation steps in `steps`."""
    task = held_out_tasks(config.env, 1, task_seed)[0]
    rollouts = rollouts or config.rollouts_per_task
    params = adapted_params(policy, config, task, max(steps), rollouts, task_seed)
    stride = max(1, math.ceil(horizon_of(config) / max_frames))
    episodes = [
        play_episode(config, task, mean_actions(params[k], config.activation), size, stride)
        for k in steps
    ]
    captions = [caption(k, episode) for k, episode in zip(steps, episodes)]
    frames = side_by_side([e.frames for e in episodes], captions)
    return write_video(frames, out, fps), episodes


def caption(step: int, episode: Episode) -> str:
    text = f"{step} step{'s' if step != 1 else ''}\nreturn {episode.total_return:.1f}"
    if episode.success is not None:
        text += ", success: yes" if episode.success else ", success: no"
    return text
