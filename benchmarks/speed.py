"""metarl's speed benchmarks in one run on one machine, and the README's speed tables from it.

    python benchmarks/speed.py run [--anchor DIR] [--allow-busy]
        env_step_rate.py, meta_iteration.py (with pytorch-maml-rl side by side when
        --anchor is given) and sampler_throughput.py, one after the other, each writing
        its JSON to benchmarks/results/; then benchmarks/results/speed_block.json (the
        machine, each benchmark's start and end, the CPU load around it) and `report`.
        Refuses to start on a busy machine (other processes using more than a quarter
        of the CPUs): stop background training first (SIGINT checkpoints it).
    python benchmarks/speed.py report
        the README's speed tables, between its `<!-- speed:NAME -->` markers, from the
        JSON files of the last `run` (a run: about 25 minutes on 2 cores with --anchor).

Only ratios measured within one run are compared (machines of the same kind differ
2-3x), so every table of the README's speed sections comes from one block.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks/results"
README = ROOT / "README.md"
BLOCK = "speed_block.json"
BENCHMARKS = {  # name: (script, arguments): the settings the README's tables were taken with
    "env_step_rate": ("env_step_rate.py", ["--repeats", "3"]),
    "meta_iteration": ("meta_iteration.py", ["--rounds", "2"]),
    "sampler_throughput": ("sampler_throughput.py", ["--repeats", "2"]),
}
BUSY_LIMIT = 0.25  # of all CPUs, used by other processes before the run


def cpu_busy_fraction(seconds: float = 3.0) -> float:
    """Fraction of all CPUs busy over `seconds` (from /proc/stat)."""

    def times() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    total_0, idle_0 = times()
    time.sleep(seconds)
    total_1, idle_1 = times()
    return 1 - (idle_1 - idle_0) / max(total_1 - total_0, 1)


def machine() -> dict:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    memory_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )  # fmt: skip
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_kb / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def run(args) -> None:
    busy = cpu_busy_fraction()
    if busy > BUSY_LIMIT and not args.allow_busy:
        sys.exit(
            f"the machine is busy: {busy:.0%} of its CPUs in use before the run (limit "
            f"{BUSY_LIMIT:.0%}); stop background work (training: SIGINT, it checkpoints) "
            "or pass --allow-busy, and the README will say it was busy"
        )
    block = {"machine": machine(), "cpu_busy_before": busy, "benchmarks": []}
    for name, (script, arguments) in BENCHMARKS.items():
        command = [sys.executable, f"benchmarks/{script}", *arguments]
        if name == "meta_iteration" and args.anchor:
            command += ["--anchor", str(args.anchor)]
        print(f"{time.strftime('%H:%M:%S')} {' '.join(command[1:])}", flush=True)
        entry = {"name": name, "command": " ".join(command[1:]), "started": utc_now()}
        entry["load_1m_before"] = os.getloadavg()[0]
        subprocess.run(command, check=True, cwd=ROOT)
        entry.update(ended=utc_now(), load_1m_after=os.getloadavg()[0])
        block["benchmarks"].append(entry)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / BLOCK).write_text(json.dumps(block, indent=2) + "\n")
    report(README, RESULTS)


def utc_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def read_results(results: Path) -> dict:
    """The block and the three benchmarks' JSON, or SystemExit naming what is missing."""
    names = [BLOCK, *(f"{name}.json" for name in BENCHMARKS)]
    missing = [n for n in names if not (results / n).exists()]
    if missing:
        sys.exit(f"no {', '.join(missing)} in {results}: run `python benchmarks/speed.py run`")
    return {n.removesuffix(".json"): json.loads((results / n).read_text()) for n in names}


def report(readme: Path, results: Path) -> None:
    """Write each speed table between its README markers."""
    from readme_markers import has_section, replace_section
    from speed_tables import tables  # benchmarks/ is the script's folder, first on sys.path

    generated = tables(read_results(results))  # a missing file stops before the README is read
    text = readme.read_text()
    for name, table in generated.items():
        if not has_section(text, f"speed:{name}"):
            sys.exit(f"{readme} has no <!-- speed:{name} --> ... <!-- /speed:{name} --> markers")
        text = replace_section(text, f"speed:{name}", table)
        print(f"README: speed:{name} written")
    readme.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_command = commands.add_parser("run")
    run_command.add_argument("--anchor", type=Path, help="pytorch-maml-rl folder (anchor.py)")
    run_command.add_argument("--allow-busy", action="store_true")
    commands.add_parser("report")
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    else:
        report(README, RESULTS)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
