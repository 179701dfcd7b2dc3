"""The runner of the locomotion experiments: train for a wall-clock budget, evaluate, report.

Runs take hours, longer than one process (or one session) lives, so each run's
directory lives in the repository, under benchmarks/runs/NAME/ (config.yaml,
metrics.csv, checkpoint.pt, best.pt, tensorboard/), and every invocation starts
or resumes the runs listed in benchmarks/locomotion.yaml from what is there.
Resume is exact, so a run carried over many stops equals one straight run.

    python benchmarks/locomotion.py train --hours 3 [--jobs 2] [--only NAME,...] [--roles ROLE,...]
        start or resume the runs, --jobs at a time (at low priority), until they are
        done or the budget is used up; then each stops cleanly (SIGTERM: a checkpoint
        at its last completed iteration)
    python benchmarks/locomotion.py status
    python benchmarks/locomotion.py eval [--only GROUP,...] [--partial] [--physics-threads N]
        `metarl eval` of a group's best.pt (or each run's last parameters, where the
        group says `checkpoint: last`) against pretrained, random and oracle
        (40 held-out tasks, 0-3 steps) into benchmarks/results/GROUP_eval.json, and a
        copy per stage of the budget into benchmarks/results/stages/
        (with N physics threads: the same numbers, faster on N free cores);
        --partial evaluates runs that have not finished their iterations (the report
        then says how far they got)
    python benchmarks/locomotion.py report
        the README's tables and docs/GROUP.png from benchmarks/results/ and the runs

A group's `baseline_set` holds settings of the baselines only; its `fork` continues
another group's committed runs with a change (benchmarks/locomotion_forks.py); its
`checkpoint` and `finetune_step_sizes` shape its evaluation (benchmarks/locomotion_eval.py).

Commit benchmarks/runs/ and benchmarks/results/ after each invocation: the next
one (on any machine) continues from what is committed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from locomotion_eval import chosen_checkpoints, evaluate_group  # benchmarks/ on sys.path
from locomotion_forks import fork_from_history

from metarl.config_file import ConfigError, parse_overrides

ROOT = Path(__file__).resolve().parents[1]
RUNS, RESULTS, DOCS = ROOT / "benchmarks/runs", ROOT / "benchmarks/results", ROOT / "docs"
EXPERIMENTS = ROOT / "benchmarks/locomotion.yaml"
README = ROOT / "README.md"
BASELINES = ("pretrain", "oracle")


@dataclass
class Run:
    name: str
    group: str
    algorithm: str
    config: Path
    settings: dict  # what defines the result (`--set` at the start)
    run_settings: dict = field(default_factory=dict)  # how it runs here
    fork: dict | None = None  # {group, iteration}: start from that group's committed run

    @property
    def run_dir(self) -> Path:
        return RUNS / self.name

    @property
    def iterations(self) -> int:
        return int(self.settings["iterations"])

    def done_iterations(self) -> int:
        from metarl.checkpoints import load_checkpoint

        checkpoint = self.run_dir / "checkpoint.pt"
        return load_checkpoint(checkpoint)["state"]["iteration"] if checkpoint.exists() else 0

    def finished(self) -> bool:
        return self.done_iterations() >= self.iterations

    def command(self) -> list[str]:
        metarl = [sys.executable, "-m", "metarl.cli", "train"]
        run_settings = [f"--set={k}={json.dumps(v)}" for k, v in self.run_settings.items()]
        if (self.run_dir / "checkpoint.pt").exists():
            more = [f"--set=iterations={self.iterations}"]  # a larger budget extends the run
            return [*metarl, "--resume", str(self.run_dir), *more, *run_settings, "--no-progress"]
        settings = [f"--set={k}={json.dumps(v)}" for k, v in self.settings.items()]
        return [
            *metarl,
            str(self.config),
            *settings,
            *run_settings,
            "--run-dir",
            str(self.run_dir),
            "--no-progress",
        ]


def load_runs() -> tuple[dict, list[Run]]:
    """(groups as written, every run in priority order: all MAML runs, then the baselines)."""
    spec = yaml.safe_load(EXPERIMENTS.read_text())
    groups, runs = spec["groups"], []
    for role in ("maml", *BASELINES):
        for group, values in groups.items():
            settings = dict(values["set"])
            if role != "maml":  # the same env steps per iteration, without inner steps
                settings.update(values.get("baseline_set", {}))
                config = {**yaml.safe_load((ROOT / values["config"]).read_text()), **settings}
                inner_steps, base = config["inner_steps"], config["meta_batch_size"]
                settings.update(algorithm=role, meta_batch_size=base * (inner_steps + 1))
            name = group if role == "maml" else f"{group}_{role}"
            config_path, fork = ROOT / values["config"], values.get("fork")
            runs.append(Run(name, group, role, config_path, settings, spec["run"], fork))
    return groups, runs


def selected(runs: list[Run], only: str, roles: str = "") -> list[Run]:
    """The runs `--only` names, by run or group name (every run without it), of the `--roles`
    named (every role without it: a MAML run is named as its group, so `--roles maml` is
    how to take it alone); an unknown name stops the command (a typo would otherwise
    train nothing, or status show nothing)."""
    names = set(filter(None, only.split(",")))
    known = {r.name for r in runs} | {r.group for r in runs}
    unknown = sorted(names - known)
    if unknown:
        groups = ", ".join(dict.fromkeys(r.group for r in runs))
        raise SystemExit(f"--only: no run or group named {', '.join(unknown)}; groups: {groups}")
    wanted = set(filter(None, roles.split(",")))
    unknown_roles = sorted(wanted - {"maml", *BASELINES})
    if unknown_roles:
        raise SystemExit(
            f"--roles: no role {', '.join(unknown_roles)}; roles: maml, pretrain, oracle"
        )
    return [
        r
        for r in runs
        if (not names or r.name in names or r.group in names)
        and (not wanted or r.algorithm in wanted)
    ]


def selected_groups(groups: dict, only: str) -> dict:
    """The groups `--only` names (every group without it); an unknown name stops the command."""
    names = list(filter(None, only.split(",")))
    unknown = [n for n in names if n not in groups]
    if unknown:
        known = ", ".join(groups)
        raise SystemExit(f"--only: no group named {', '.join(unknown)}; groups: {known}")
    return {g: v for g, v in groups.items() if not names or g in names}


def train(args) -> None:
    """Start or resume runs, --jobs at a time, until done or --hours have passed."""
    _, runs = load_runs()
    try:  # each value read as YAML, as `metarl train --set` reads it; the trainer refuses
        extra = parse_overrides(args.set)  # on resume a setting that defines the result
    except ConfigError as error:
        raise SystemExit(str(error)) from None
    queue = [r for r in selected(runs, args.only, args.roles) if not r.finished()]
    for run in queue:
        run.run_settings = {**run.run_settings, **extra}
    deadline = time.monotonic() + args.hours * 3600
    active: dict[str, subprocess.Popen] = {}
    logs = RUNS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"{len(queue)} runs to train, {args.jobs} at a time, for {args.hours:g} h", flush=True)
    try:
        while (queue or active) and time.monotonic() < deadline:
            while queue and len(active) < args.jobs:
                run = queue.pop(0)
                if run.fork and not (run.run_dir / "checkpoint.pt").exists():
                    start = fork_from_history(run, RUNS, ROOT)
                    print(f"{run.name}: forked from {run.fork['group']} at {start}", flush=True)
                print(
                    f"{time.strftime('%H:%M')} {run.name}: from iteration "
                    f"{run.done_iterations()} of {run.iterations}",
                    flush=True,
                )
                with (logs / f"{run.name}.log").open("a") as log:
                    active[run.name] = subprocess.Popen(
                        ["nice", "-n", str(args.nice), *run.command()],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        cwd=ROOT,
                    )
            time.sleep(5)
            for name, process in list(active.items()):
                if process.poll() is not None:
                    print(f"{time.strftime('%H:%M')} {name}: exit {process.returncode}", flush=True)
                    del active[name]
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM to the runner: stop the runs as at the deadline
        print(f"{time.strftime('%H:%M')} interrupted: stopping the runs", flush=True)
    finally:  # budget used up (or Ctrl-C here): each run writes its checkpoint and stops
        for process in active.values():
            process.send_signal(signal.SIGTERM)
        for name, process in active.items():
            process.wait()
            print(f"{time.strftime('%H:%M')} {name}: stopped (exit {process.returncode})")
    status(args)


def status(args) -> None:
    _, runs = load_runs()
    for run in selected(runs, args.only, args.roles):
        print(f"{run.name:28s} {run.done_iterations():4d} / {run.iterations} iterations")


def evaluate(args) -> None:
    """`metarl eval` of each selected group whose runs are finished (or --partial)."""
    groups, runs = load_runs()
    for group in selected_groups(groups, args.only):
        members = {r.algorithm: r for r in runs if r.group == group}
        chosen = chosen_checkpoints(groups[group], members)
        missing = [members[role].name for role, path in chosen.items() if not path.exists()]
        unfinished = [r.name for r in members.values() if not r.finished()]
        if missing or (unfinished and not args.partial):
            print(f"{group}: not evaluated (unfinished: {missing or unfinished})")
            continue
        evaluate_group(
            group, groups[group], members, RESULTS, ROOT, args.tasks, args.physics_threads
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "status", "eval", "report"):
        command = commands.add_parser(name)
        names = "run or group names" if name in ("train", "status") else "group names"
        command.add_argument("--only", default="", help=f"comma-separated {names}")
        if name in ("train", "status"):
            command.add_argument(
                "--roles", default="", help="comma-separated maml, pretrain, oracle (default all)"
            )
        if name == "train":
            command.add_argument("--hours", type=float, required=True, help="wall-clock budget")
            command.add_argument("--jobs", type=int, default=2, help="runs at a time")
            command.add_argument("--nice", type=int, default=19, help="priority of the runs")
            command.add_argument(
                "--set",
                action="append",
                default=[],
                metavar="KEY=VALUE",
                help="a run setting for every run, over the yaml's `run` (e.g. physics_threads=2)",
            )
        if name == "eval":
            command.add_argument("--partial", action="store_true")
            command.add_argument("--tasks", type=int, default=40)
            command.add_argument(
                "--physics-threads", type=int, default=1, help="metarl eval's (same results)"
            )
    args = parser.parse_args()
    if args.command == "report":
        from locomotion_report import report

        groups, runs = load_runs()
        report(README, RESULTS, DOCS, (selected_groups(groups, args.only), runs))
        return
    {"train": train, "status": status, "eval": evaluate}[args.command](args)


def _raise_keyboard_interrupt(signal_number, frame):
    raise KeyboardInterrupt  # SIGTERM to the runner: stop the runs cleanly, as at the deadline


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)  # even if started in the background
    main()
