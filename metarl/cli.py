"""The `metarl` command line: `metarl train CONFIG [--set key=value]... [--run-dir DIR]`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import metarl
from metarl.config import ConfigError, load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metarl",
        description="Model-Agnostic Meta-Learning (MAML) for policies on task distributions.",
    )
    parser.add_argument("--version", action="version", version=f"metarl {metarl.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser("train", help="meta-train a policy from a YAML config")
    train.add_argument("config", help="YAML file whose keys are TrainConfig fields")
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
    return parser


def run_train(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    run_dir = (
        args.run_dir or Path("runs") / f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    from metarl.trainer import train  # heavy imports only once the config is valid

    train(config, run_dir, show_progress=not args.no_progress)
    print(f"run written to {run_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return {"train": run_train}[args.command](args)
    except (ConfigError, FileExistsError) as error:
        print(f"metarl: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
