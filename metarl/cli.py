"""The `metarl` command line.

metarl train CONFIG [--set key=value]... [--run-dir DIR]
metarl eval CHECKPOINT [--tasks N] [--steps K] [--seed S] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

import metarl
from metarl.checkpoints import CheckpointError, load_checkpoint
from metarl.config import ConfigError, load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metarl",
        description="Model-Agnostic Meta-Learning (MAML) for policies on task distributions.",
    )
    parser.add_argument("--version", action="version", version=f"metarl {metarl.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser("train", help="meta-train from a YAML config")
    train.add_argument("config", help="YAML file whose keys are the config's fields")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key (repeatable), e.g. --set iterations=10",
    )
    train.add_argument(
        "--run-dir", type=Path, help="where to write the run (default: runs/<config>-<time>)"
    )
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    evaluate = commands.add_parser("eval", help="evaluate adaptation from a checkpoint")
    evaluate.add_argument("checkpoint", type=Path, help="a checkpoint file written by train")
    evaluate.add_argument("--tasks", type=int, default=None, help="held-out tasks")
    evaluate.add_argument("--steps", type=int, default=None, help="adaptation steps")
    evaluate.add_argument("--seed", type=int, default=None, help="seed of the held-out tasks")
    evaluate.add_argument(
        "--out", type=Path, default=None, help="output directory (default: beside the checkpoint)"
    )
    return parser


def is_supervised_config(path: str | Path) -> bool:
    """Supervised configs name their `problem` (sinusoid, omniglot); RL configs an `env`."""
    try:
        values = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False  # load_config reports the problem
    return isinstance(values, dict) and "problem" in values


def run_train(args: argparse.Namespace) -> int:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = args.run_dir or Path("runs") / f"{Path(args.config).stem}-{stamp}"
    # Heavy imports only once the config is known to be valid.
    if is_supervised_config(args.config):
        from metarl.supervised.config import SupervisedConfig

        config = load_config(args.config, args.overrides, SupervisedConfig)
        from metarl.supervised.trainer import train as train_supervised

        train_supervised(config, run_dir, show_progress=not args.no_progress)
    else:
        config = load_config(args.config, args.overrides)
        from metarl.trainer import train

        train(config, run_dir, show_progress=not args.no_progress)
    print(f"run written to {run_dir}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.checkpoint)
    if checkpoint.get("kind") == "supervised":
        from metarl.supervised.evaluate import evaluate_checkpoint

        evaluate_checkpoint(args.checkpoint, checkpoint, args)
        return 0
    raise CheckpointError(f"{args.checkpoint}: RL evaluation is not available yet")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return {"train": run_train, "eval": run_eval}[args.command](args)
    except (ConfigError, CheckpointError, FileExistsError) as error:
        print(f"metarl: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
