"""What `metarl train` shows while it runs: a start block, then two progress bars.

The start block says where the run goes (its directory and the TensorBoard command
for it), what one iteration costs in env steps, how it samples and, on resume,
where it continues. The first bar counts meta-iterations over the whole run (a
resumed run's bar starts at its iteration and elapsed time); its ETA comes from
measured seconds per iteration. The second bar follows the current iteration: the
rollouts and env steps sampled so far (a locomotion iteration samples for minutes),
then the meta-step.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from tqdm import tqdm

from metarl.config import TrainConfig, hvp_warning
from metarl.experiment import algorithm_setup, horizon_of
from metarl.resuming import TrainingState

ITERATION_BAR = "{desc}{percentage:3.0f}%|{bar}| {n}/{total} rollouts [{elapsed}{postfix}]"


def phases_per_iteration(config: TrainConfig) -> int:
    """Batches of rollouts of each task per iteration: one per inner step, plus validation."""
    return algorithm_setup(config).inner_steps + 1


def rollouts_per_iteration(config: TrainConfig) -> int:
    return config.meta_batch_size * config.rollouts_per_task * phases_per_iteration(config)


def env_steps_per_iteration(config: TrainConfig) -> int:
    """The most env steps one iteration samples (fewer when episodes end early)."""
    return rollouts_per_iteration(config) * horizon_of(config)


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def sampler_plan(config: TrainConfig) -> str:
    if config.sampler == "local":
        threads = config.physics_threads
        physics = f", their physics over {threads} threads" if threads > 1 else ""
        return f"local: {config.num_envs} envs stepped together in this process{physics}"
    workers = f"{config.num_workers} workers" if config.num_workers else "one worker per CPU"
    if config.ray_address:
        return f"ray: {workers} on the Ray cluster at {config.ray_address} (connecting)"
    return f"ray: {workers} on a local Ray (starting it now)"


def start_block(config: TrainConfig, run_dir: Path, state: TrainingState) -> str:
    """The lines printed when a run starts or resumes, before any sampling."""
    phases = phases_per_iteration(config)
    lines = [
        f"run directory:   {run_dir}",
        f"TensorBoard:     tensorboard --logdir {shlex.quote(str(run_dir))}",
        f"per iteration:   {config.meta_batch_size} tasks x {config.rollouts_per_task} rollouts"
        f" x {horizon_of(config)} steps x {phases} phase{'s' if phases > 1 else ''}"
        f" = up to {env_steps_per_iteration(config):,} env steps",
        f"iterations:      {config.iterations} ({config.algorithm}, {config.env})",
        f"sampler:         {sampler_plan(config)}",
        f"stopping:        Ctrl-C keeps a checkpoint; continue with metarl train --resume "
        f"{shlex.quote(str(run_dir))}",
    ]
    warning = hvp_warning(config)
    if warning is not None:
        lines.append(f"warning:         {warning}")
    if state.iteration:
        lines.append(
            f"resuming:        at iteration {state.iteration} of {config.iterations}, "
            f"{state.env_steps:,} env steps and {duration(state.wall_s)} of training done"
        )
    return "\n".join(lines)


def sampler_ready(sampler: object, seconds: float) -> str | None:
    """A line once Ray workers are up (they take seconds to start); None for other samplers."""
    workers = getattr(sampler, "num_workers", None)
    if workers is None:
        return None
    return f"Ray workers:     {workers} ready after {seconds:.1f} s"


class TrainingProgress:
    """The two bars: meta-iterations of the run, and sampling within the current one."""

    def __init__(self, config: TrainConfig, state: TrainingState, enabled: bool):
        self.iteration = state.iteration
        self.adapts = phases_per_iteration(config) > 1
        common = dict(disable=not enabled, miniters=1, dynamic_ncols=True)
        self.run = tqdm(
            total=config.iterations,
            initial=state.iteration,
            desc="meta-iterations",
            unit="it",
            position=0,
            **common,
        )
        if not self.run.disable:
            self.run.start_t -= state.wall_s  # the whole run's elapsed time, resumed or not
            self.run.refresh()  # shown at once, not only after the first iteration
        self.current = tqdm(
            total=rollouts_per_iteration(config),
            desc="sampling: ",
            position=1,
            leave=False,
            bar_format=ITERATION_BAR,
            **common,
        )
        self.sampling_start = time.perf_counter()

    def start_iteration(self, iteration: int) -> None:
        self.iteration, self.sampling_start = iteration, time.perf_counter()
        self.current.set_description(f"iteration {iteration} sampling", refresh=False)
        self.current.set_postfix_str("0 env steps", refresh=False)
        self.current.reset()

    def sampled(self, env_steps: int, rollouts: int) -> None:
        """The sampler's progress callback (metarl.sampling.SamplingProgress)."""
        rate = env_steps / max(time.perf_counter() - self.sampling_start, 1e-9)
        self.current.set_postfix_str(f"{env_steps:,} env steps, {rate:,.0f}/s", refresh=False)
        self.current.update(rollouts - self.current.n)

    def updating(self) -> None:
        self.current.set_description(f"iteration {self.iteration} meta-step")

    def finished(self, return_pre: float, return_post: float) -> None:
        """One iteration done: its mean returns before and after adaptation."""
        returns = f"pre={return_pre:.2f}, post={return_post:.2f}" if self.adapts else ""
        self.run.set_postfix_str(returns or f"return={return_pre:.2f}", refresh=False)
        self.run.update(1)

    def write(self, message: str) -> None:
        self.run.write(message)

    def close(self) -> None:
        self.current.close()
        self.run.close()
