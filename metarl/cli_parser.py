"""The `metarl` command line's arguments: one subcommand each for train, eval, plot, render.

`metarl.cli` parses with `build_parser()` and runs the subcommand; the help texts here
are what `metarl COMMAND --help` prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import metarl


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metarl",
        description="Model-Agnostic Meta-Learning (MAML) for policies on task distributions.",
    )
    parser.add_argument("--version", action="version", version=f"metarl {metarl.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser("train", help="meta-train from a YAML config")
    train.add_argument("config", nargs="?", help="YAML file whose keys are the config's fields")
    train.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its checkpoint; --set may raise iterations and "
        "change run settings (sampler, workers, threads, ...)",
    )
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
    train.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="join this Ray cluster ('auto' or host:port) for sampler=ray; "
        "the same as --set ray_address=ADDR",
    )

    evaluate = commands.add_parser("eval", help="evaluate adaptation from a checkpoint")
    evaluate.add_argument(
        "checkpoint", type=Path, help="a checkpoint file written by train, or its run directory"
    )
    evaluate.add_argument(
        "--checkpoint",
        dest="which",
        choices=["best", "last"],
        default=None,
        help="which checkpoint of a run directory (and of the baselines' run directories): "
        "best.pt, the iteration with the best post-adaptation return (default), or "
        "checkpoint.pt, the last",
    )
    evaluate.add_argument("--tasks", type=int, default=None, help="held-out tasks (RL: 40)")
    evaluate.add_argument("--steps", type=int, default=None, help="adaptation steps (RL: 3)")
    evaluate.add_argument(
        "--rollouts", type=int, default=None, help="rollouts per task and step (RL: the config's)"
    )
    evaluate.add_argument("--seed", type=int, default=None, help="seed of the held-out tasks")
    evaluate.add_argument(
        "--physics-threads",
        type=int,
        default=None,
        metavar="N",
        help="RL, HalfCheetah and Ant: threads that step the env copies' physics (default: "
        "the run's physics_threads); the results do not change",
    )
    evaluate.add_argument(
        "--finetune-step-sizes",
        default=None,
        metavar="LIST",
        help="RL: comma-separated step sizes the pretrained and random baselines' fine-tuning "
        "is tuned over (default: the run's finetune_step_sizes)",
    )
    evaluate.add_argument(
        "--eval-step-sizes",
        default=None,
        metavar="LIST",
        help="RL: comma-separated step sizes of MAML's (and context's) inner steps, step k "
        "the k-th, the last for further steps (default: the run's eval_step_sizes)",
    )
    evaluate.add_argument(
        "--baselines",
        default="",
        metavar="LIST",
        help="comma-separated methods to compare: pretrained, random, oracle, context; "
        "name=PATH uses that checkpoint, otherwise the baseline is trained (once) with "
        "the run's config into RUN_DIR/baselines/NAME",
    )
    evaluate.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default=None,
        help="where the learner's work runs (default: the run's device key). Supervised: the "
        "whole evaluation (fine-tuning and scoring). RL: only the baselines trained here; "
        "the adaptation steps of an RL evaluation run inside the sampler beside the "
        "rollouts, on CPU, whatever the device",
    )
    evaluate.add_argument(
        "--env",
        default=None,
        metavar="ID",
        help="RL: evaluate every method on this env instead of the run's, given the same "
        "observations, actions and tasks (e.g. metarl/AntVelNoTermination-v0 for an "
        "AntVel-v0 run)",
    )
    evaluate.add_argument("--no-progress", action="store_true", help="hide progress bars")
    evaluate.add_argument(
        "--out", type=Path, default=None, help="output directory (default: beside the checkpoint)"
    )

    plot = commands.add_parser("plot", help="learning and adaptation curves as a PNG")
    plot.add_argument(
        "inputs", nargs="+", type=Path, help="run directories (metrics.csv) and/or eval.json files"
    )
    plot.add_argument("-o", "--output", type=Path, default=Path("metarl.png"), help="PNG file")

    render = commands.add_parser(
        "render", help="video of a held-out task before and after adaptation, side by side"
    )
    render.add_argument("checkpoint", type=Path, help="an RL checkpoint, or its run directory")
    render.add_argument("--task-seed", type=int, default=0, help="which held-out task (seed)")
    render.add_argument(
        "--steps", default="0,1", help="adaptation steps of each panel, e.g. 0,1,3 (default 0,1)"
    )
    render.add_argument(
        "--rollouts", type=int, default=None, help="rollouts per adaptation step (the config's)"
    )
    render.add_argument("--size", type=int, default=240, help="panel width and height in pixels")
    render.add_argument(
        "--max-frames", type=int, default=100, help="frames per panel (steps are skipped evenly)"
    )
    render.add_argument("-o", "--output", type=Path, default=Path("adapt.gif"), help=".gif or .mp4")
    return parser
