"""The direction of imports (DESIGN.md section 1): base <- core <- ... <- application.

Supervised MAML builds on the base and core layers only, never on the RL application
(its config, trainer, evaluation, ...), so that one half can change without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "metarl"
BASE = {
    "metarl.config_file",
    "metarl.config_validation",
    "metarl.checkpoints",
    "metarl.metrics",
    "metarl.run_dir",
    "metarl.runtime",
}
CORE = {
    "metarl.params",
    "metarl.episodes",
    "metarl.policies",
    "metarl.value_baseline",
    "metarl.inner",
    "metarl.trpo",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at top level or inside functions (`from a import b`: a.b
    where b is a module, else a)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                folder = PACKAGE.parent / candidate.replace(".", "/")
                is_module = folder.with_suffix(".py").is_file() or folder.is_dir()
                modules.add(candidate if is_module else node.module)
    return modules


def metarl_imports(path: Path) -> set[str]:
    return {m for m in imported_modules(path) if m.split(".")[0] in ("metarl", "metarl_envs")}


def test_imported_modules_resolves_from_imports(tmp_path):
    source = tmp_path / "example.py"
    source.write_text(
        "import metarl.runtime\n"
        "from metarl.supervised import omniglot\n"
        "from metarl.config import TrainConfig\n"
        "def f():\n    from metarl.trainer import train\n"
    )
    assert metarl_imports(source) == {
        "metarl.runtime",
        "metarl.supervised.omniglot",
        "metarl.config",
        "metarl.trainer",
    }


@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "supervised").glob("*.py")), ids=lambda p: p.name
)
def test_supervised_imports_only_base_core_and_itself(path):
    wrong = {
        m
        for m in metarl_imports(path)
        if m not in BASE | CORE and not m.startswith("metarl.supervised")
    }
    assert not wrong, f"{path.name} imports {sorted(wrong)}: not a base or core module"


@pytest.mark.parametrize("name", sorted(BASE | CORE))
def test_base_and_core_import_nothing_above_them(name):
    path = PACKAGE / f"{name.removeprefix('metarl.')}.py"
    allowed = BASE | ({"metarl"} if name in BASE else CORE)  # base: metarl.__version__
    wrong = metarl_imports(path) - allowed
    assert not wrong, f"{name} imports {sorted(wrong)}"


def test_only_the_cli_and_the_baseline_runs_import_the_training_loop():
    """metarl.trainer (run directories, checkpoints, the loop) is the application's top:
    the rest, benchmarks included, use metarl.meta_iteration or metarl.experiment."""
    sources = [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "benchmarks").glob("*.py")]
    importers = {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in sources
        if path.name != "trainer.py" and "metarl.trainer" in metarl_imports(path)
    }
    assert importers == {"metarl/cli.py", "metarl/comparisons.py"}


def test_every_module_is_under_300_lines():
    sources = [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "envs").glob("*.py")]
    long = {p.name: n for p in sources if (n := len(p.read_text().splitlines())) > 300}
    assert not long, f"modules over 300 lines: {long}"
