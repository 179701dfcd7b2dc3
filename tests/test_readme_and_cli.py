"""The README's test command is the one CI runs; the console script answers."""

import re
import subprocess
import sys
from pathlib import Path

import metarl

REPO = Path(__file__).resolve().parents[1]


def test_ci_runs_exactly_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    match = re.search(r'pip install -e "\.\[test\]" && (.+)\n', readme)
    assert match, "README lost its test command"
    test_command = match.group(1).strip()
    ci_lines = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert ci_lines[-1] == test_command
    assert "set -euo pipefail" in ci_lines  # a pytest exit code 5 (no tests) fails CI


def test_version_and_help():
    run = [sys.executable, "-m", "metarl.cli"]
    version = subprocess.run([*run, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"metarl {metarl.__version__}"
    usage = subprocess.run([*run, "--help"], capture_output=True, text=True, check=True)
    assert "usage: metarl" in usage.stdout
