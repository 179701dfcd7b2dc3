"""The comparison methods `metarl eval --baselines` measures MAML against: given, reused or trained.

(These are the paper's baselines; the value baseline of the advantages is `value_baseline`.)

`--baselines pretrained,random,oracle,context` names the methods; `name=PATH`
uses an existing checkpoint (or run directory) instead. A method without a path
is trained by the ordinary trainer (`algorithm: pretrain | oracle | context`)
with the evaluated run's config into `<run dir>/baselines/<name>/`: a finished
run there is reused, an unfinished one resumed, so repeating the command costs
nothing and an interrupted one picks up where it stopped.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import nn

from metarl.checkpoints import CheckpointError, load_checkpoint
from metarl.config import TrainConfig
from metarl.evaluation import METHODS, random_policy
from metarl.resuming import CHECKPOINT, policy_from_checkpoint
from metarl.trainer import resume, train

TRAINED_BY = {"pretrained": "pretrain", "oracle": "oracle", "context": "context"}


def checkpoint_path(path: Path) -> Path:
    """A checkpoint file, or a run directory's `checkpoint.pt`."""
    path = Path(path)
    return path / CHECKPOINT if path.is_dir() else path


def parse_baselines(text: str | None) -> dict[str, Path | None]:
    """'pretrained,oracle=runs/x' -> {'pretrained': None, 'oracle': Path('runs/x')}."""
    baselines: dict[str, Path | None] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, _, path = item.partition("=")
        if name not in METHODS or name == "maml":
            valid = [m for m in METHODS if m != "maml"]
            raise CheckpointError(f"--baselines: unknown method {name!r}; methods: {valid}")
        if name == "random" and path:
            raise CheckpointError("--baselines: 'random' takes no checkpoint")
        baselines[name] = Path(path) if path else None
    return baselines


def baseline_config(config: TrainConfig, method: str) -> TrainConfig:
    return dataclasses.replace(config, algorithm=TRAINED_BY[method])


def trained_baseline(method: str, config: TrainConfig, run_root: Path, show_progress: bool) -> Path:
    """Train (or reuse, or resume) the baseline `method` for `config`; its checkpoint path."""
    run_dir = run_root / "baselines" / method
    wanted = baseline_config(config, method)
    checkpoint = run_dir / CHECKPOINT
    if checkpoint.is_file():
        saved = load_checkpoint(checkpoint)
        saved_config, _ = policy_from_checkpoint(saved)
        if saved_config != wanted:
            raise CheckpointError(
                f"{run_dir} holds a {method} run with another config; "
                f"remove it or pass --baselines {method}=PATH"
            )
        if saved["state"]["iteration"] < wanted.iterations:
            print(f"resuming the {method} baseline in {run_dir}")
            resume(run_dir, show_progress=show_progress)
        else:
            print(f"reusing the {method} baseline in {run_dir}")
        return checkpoint
    if run_dir.exists() and any(run_dir.iterdir()):
        raise CheckpointError(f"{run_dir} exists without a checkpoint; remove it to retrain")
    print(f"training the {method} baseline ({wanted.iterations} iterations) in {run_dir}")
    train(wanted, run_dir, show_progress)
    return checkpoint


def baseline_policies(
    baselines: dict[str, Path | None],
    config: TrainConfig,
    run_root: Path,
    show_progress: bool = True,
) -> dict[str, tuple[nn.Module, TrainConfig, str]]:
    """name -> (policy, its config, source) for each requested baseline."""
    policies = {}
    for method, path in baselines.items():
        if method == "random":
            policies[method] = (random_policy(config), config, "fresh initialization")
            continue
        if path is None:
            path = trained_baseline(method, config, run_root, show_progress)
        path = checkpoint_path(path)
        baseline_config_, policy = policy_from_checkpoint(load_checkpoint(path))
        if baseline_config_.algorithm != TRAINED_BY[method]:
            raise CheckpointError(
                f"{path}: a checkpoint of algorithm {baseline_config_.algorithm!r}, "
                f"not {TRAINED_BY[method]!r} as the {method} baseline needs"
            )
        if baseline_config_.env != config.env:
            raise CheckpointError(f"{path}: env {baseline_config_.env}, not {config.env}")
        policies[method] = (policy, baseline_config_, str(path))
    return policies
