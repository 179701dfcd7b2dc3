"""The `metarl` command line.

metarl train CONFIG [--set key=value]... [--run-dir DIR]
metarl train --resume RUN_DIR [--set iterations=N] [--set RUN_SETTING=VALUE]...
metarl eval CHECKPOINT_OR_RUN_DIR [--checkpoint best|last] [--tasks N] [--steps K]
            [--rollouts R] [--seed S] [--baselines pretrained,random,oracle,context] [--out DIR]
            [--device auto|cpu|cuda] [--env ID]
metarl plot RUN_DIR_OR_EVAL_JSON... [-o FILE.png]
metarl render CHECKPOINT_OR_RUN_DIR [--task-seed N] [--steps 0,1,3] [-o adapt.gif|.mp4]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from metarl.checkpoints import CheckpointError, load_checkpoint
from metarl.cli_parser import build_parser
from metarl.config import EVALUATED_AS, TrainConfig
from metarl.config_file import read_config_file
from metarl.config_validation import ConfigError, load_config, parse_overrides
from metarl.run_dir import RunFileError, writable_dir
from metarl.runtime import ignore_stops_if_stopping, stop_process_on_signals


def is_supervised_config(path: str | Path) -> bool:
    """Supervised configs name their `problem` (sinusoid, omniglot); RL configs an `env`."""
    try:
        return "problem" in read_config_file(path)
    except ConfigError:
        return False  # load_config reports the problem


def run_train(args: argparse.Namespace) -> int:
    if args.ray_address is not None:  # a JSON string is a YAML string: host:port stays text
        args.overrides = [*args.overrides, f"ray_address={json.dumps(args.ray_address)}"]
    if args.resume is not None:
        return resume_training(args)
    if args.config is None:
        raise ConfigError("train: give a CONFIG file, or --resume RUN_DIR")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = args.run_dir or Path("runs") / f"{Path(args.config).stem}-{stamp}"
    # Heavy imports only once the config is known to be valid.
    if is_supervised_config(args.config):
        from metarl.supervised.config import SupervisedConfig

        config = load_config(SupervisedConfig, args.config, args.overrides)
        from metarl.supervised.trainer import train_supervised

        train_supervised(config, run_dir, show_progress=not args.no_progress)
    else:
        config = load_config(TrainConfig, args.config, args.overrides)
        from metarl.trainer import train

        train(config, run_dir, show_progress=not args.no_progress)
    print(f"run written to {run_dir}")
    return 0


def resume_training(args: argparse.Namespace) -> int:
    if args.config is not None:
        raise ConfigError("train --resume RUN_DIR takes no CONFIG: the run keeps its own")
    if is_supervised_config(Path(args.resume) / "config.yaml"):
        raise ConfigError(
            f"--resume {args.resume}: resuming is for RL runs; a supervised run restarts "
            "with metarl train CONFIG (its checkpoints serve metarl eval)"
        )
    overrides = parse_overrides(args.overrides)
    from metarl.trainer import resume

    resume(args.resume, overrides, show_progress=not args.no_progress)
    print(f"run written to {args.resume}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from metarl.comparisons import DEFAULT_CHECKPOINT, checkpoint_path, describe_checkpoint

    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {str(args.out)!r} is a file; give a directory for the results")
    if args.which is not None and not args.checkpoint.is_dir():
        raise ConfigError(
            f"--checkpoint {args.which} picks a file of a run directory; {args.checkpoint} "
            "is not a directory"
        )
    which = args.which or DEFAULT_CHECKPOINT
    path = checkpoint_path(args.checkpoint, which)
    checkpoint = load_checkpoint(path)
    writable_dir(args.out or path.parent)  # before the evaluation's minutes, not after
    print(f"evaluating {describe_checkpoint(path, checkpoint)}", flush=True)
    if checkpoint.get("kind") == "supervised":
        from metarl.supervised.evaluate import evaluate_checkpoint

        rl_only = (args.rollouts, args.physics_threads, args.env)
        rl_only += (args.finetune_step_sizes, args.eval_step_sizes)
        if args.baselines or any(value is not None for value in rl_only):
            raise ConfigError(
                "--baselines, --rollouts, --physics-threads, --finetune-step-sizes, "
                "--eval-step-sizes and --env apply to RL checkpoints; a "
                "supervised baseline is its own run (algorithm: pretrain, oracle, multitask, "
                "context): eval its checkpoint"
            )

        evaluate_checkpoint(path, checkpoint, args)
        return 0
    from metarl.comparisons import (
        baseline_policies,
        on_env,
        parse_baselines,
        run_config,
        trains_baselines,
    )
    from metarl.evaluation import EvaluationSettings, run_evaluation
    from metarl.evaluation_results import format_table, write_results
    from metarl.resuming import policy_from_checkpoint
    from metarl.runtime import learner_device

    baselines = parse_baselines(args.baselines)  # checked before any work
    settings = EvaluationSettings(
        tasks=args.tasks or 40,
        steps=args.steps if args.steps is not None else 3,
        rollouts=args.rollouts,
        seed=args.seed or 0,
        physics_threads=args.physics_threads,
        finetune_step_sizes=parse_step_sizes(args.finetune_step_sizes, "--finetune-step-sizes"),
        eval_step_sizes=parse_step_sizes(args.eval_step_sizes, "--eval-step-sizes"),
    )
    for key in ("tasks", "rollouts", "physics_threads"):
        value = getattr(args, key)
        if value is not None and value < 1:
            raise ConfigError(f"--{key.replace('_', '-')} must be >= 1, got {value}")
    if settings.steps < 0:
        raise ConfigError(f"--steps must be >= 0, got {settings.steps}")
    config, policy = policy_from_checkpoint(checkpoint)
    config = run_config(path, checkpoint, config)  # best.pt's may predate a resume
    if trains_baselines(baselines):  # cuda without CUDA: refused before any training
        if args.device is not None:
            learner_device(args.device, "--device")
        else:
            learner_device(config.device, "the run's key 'device' (or give --device)")
    elif args.device is not None:
        print(
            f"--device {args.device}: no baseline is trained here, and an RL evaluation adapts "
            "inside the sampler, on CPU"
        )
    method = EVALUATED_AS[config.algorithm]
    methods = {method: (policy, config, describe_checkpoint(path, checkpoint))}
    methods.update(
        baseline_policies(baselines, config, path.parent, not args.no_progress, which, args.device)
    )
    env_id = config.env
    if args.env is not None:
        methods, env_id = on_env(methods, args.env), args.env
    curves = run_evaluation(methods, settings, env_id)
    out_dir = args.out or path.parent
    json_path, csv_path = write_results(curves, settings, env_id, out_dir)
    print(format_table(curves))
    for name, (_, _, source) in methods.items():
        print(f"{name}: {source}")
    print(f"wrote {json_path} and {csv_path}")
    return 0


def run_plot(args: argparse.Namespace) -> int:
    from metarl.plotting import plot

    print(f"wrote {plot(args.inputs, args.output)}")
    return 0


def parse_steps(text: str) -> list[int]:
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        steps = []
    if not steps or any(k < 0 for k in steps):
        raise ConfigError(f"--steps {text!r}: expected adaptation steps like 0,1,3")
    return steps


def run_render(args: argparse.Namespace) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless; read when MuJoCo is first imported
    from metarl.comparisons import checkpoint_path
    from metarl.resuming import policy_from_checkpoint
    from metarl.video import check_output

    steps = parse_steps(args.steps)
    check_output(args.output)
    for key in ("rollouts", "size", "max_frames"):
        value = getattr(args, key)
        if value is not None and value < 1:
            raise ConfigError(f"--{key.replace('_', '-')} must be >= 1, got {value}")
    path = checkpoint_path(args.checkpoint)
    checkpoint = load_checkpoint(path)
    if checkpoint.get("kind") == "supervised":
        raise ConfigError(f"{path}: render shows RL policies; this is a supervised checkpoint")
    from metarl.rendering import check_offscreen_gl, render_adaptation

    check_offscreen_gl(str(checkpoint.get("config", {}).get("env", "")))  # before any work
    config, policy = policy_from_checkpoint(checkpoint)

    out, episodes = render_adaptation(
        policy, config, steps, args.output, args.task_seed, args.rollouts, args.size,
        args.max_frames,
    )  # fmt: skip
    for k, episode in zip(steps, episodes):
        success = "" if episode.success is None else f", success {episode.success}"
        print(f"{k} adaptation steps: return {episode.total_return:.2f}{success}")
    print(f"wrote {out}")
    return 0


def sampling_errors() -> tuple[type[Exception], ...]:
    """SamplingError (Ray cluster unreachable, workers failing) once sampling is loaded."""
    sampling = sys.modules.get("metarl.sampling")
    return (sampling.SamplingError,) if sampling is not None else ()


def render_errors() -> tuple[type[Exception], ...]:
    """RenderError (no offscreen GL) once rendering is loaded."""
    rendering = sys.modules.get("metarl.rendering")
    return (rendering.RenderError,) if rendering is not None else ()


def os_error_message(error: OSError) -> str:
    """RunFileError's `cannot write PATH: REASON`; other OSErrors as `PATH: REASON`."""
    if isinstance(error, RunFileError) or not error.filename:
        return str(error)
    return f"{error.filename}: {error.strerror}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        commands = {"train": run_train, "eval": run_eval, "plot": run_plot, "render": run_render}
        return commands[args.command](args)
    except (
        ConfigError,
        CheckpointError,
        FileExistsError,
        ValueError,
        *sampling_errors(),
        *render_errors(),
    ) as error:
        print(f"metarl: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a read-only folder: the last checkpoint stays
        print(f"metarl: error: {os_error_message(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # a trainer has written its checkpoint and said so
        if not getattr(stop, "reported", False):  # a stop before training, or in eval/render/plot
            reason = getattr(stop, "reason", "interrupted")
            what = {
                "train": " before training started; no checkpoint written",
                "eval": "; no results written",
            }.get(args.command, "")
            print(f"\nmetarl {args.command}: {reason}{what}", file=sys.stderr)
        return getattr(stop, "exit_code", 130)  # 143 after SIGTERM (metarl.runtime.StopRequested)


def parse_step_sizes(text: str | None, option: str) -> list[float] | None:
    """--finetune-step-sizes 0.002,0.005,0.01 -> [0.002, 0.005, 0.01] (None: not given)."""
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated numbers, got {text!r}") from None


def run() -> None:
    """The `metarl` command: `main` in a process whose stop signals end it cleanly."""
    stop_process_on_signals()
    code = main()
    ignore_stops_if_stopping()
    sys.exit(code)


if __name__ == "__main__":
    run()
