"""What an RL run's checkpoint holds, and how a run is picked up again from it.

A checkpoint holds the meta-parameters, the training counters (`TrainingState`),
the resolved config, the global RNG states and the versions that wrote it. Every
random draw of an iteration derives from (run seed, iteration), so parameters and
counters are all a run needs to continue exactly where it stopped.

A run resumes under any metarl whose ALGORITHM_VERSION equals the checkpoint's:
the code around the algorithm (samplers, layout, logging) may have changed. Its
config must be the one it was started with, except for the run settings (where
and how fast it runs: sampler, workers, threads, checkpoint interval) and a
larger `iterations`; keys added to the config since then take their defaults.
A run can also be forked: continued from a checkpoint with some settings changed,
as a new run (`fork_run`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

import metarl
from metarl.checkpoints import (
    CheckpointError,
    global_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_global_rng_state,
)
from metarl.config import TrainConfig
from metarl.config_validation import (
    ConfigError,
    config_from_dict,
    config_to_yaml,
    load_config,
    run_setting_keys,
)
from metarl.experiment import build_policy
from metarl.policies import GaussianMLPPolicy
from metarl.run_dir import write_text_file

CHECKPOINT, BEST = "checkpoint.pt", "best.pt"
KIND = "rl"


@dataclass(frozen=True)
class TrainingState:
    """Where a run is: the next iteration to run and what has been counted so far."""

    iteration: int = 0
    env_steps: int = 0
    wall_s: float = 0.0
    best_return: float = float("-inf")
    actor_restarts: int = 0  # Ray workers replaced over the whole run


def checkpoint_payload(
    config: TrainConfig, params: dict[str, torch.Tensor], state: TrainingState
) -> dict:
    """A checkpoint's content: tensors and plain values only (see metarl.checkpoints)."""
    return {
        "kind": KIND,
        "config": dataclasses.asdict(config),
        "policy": {name: p.detach() for name, p in params.items()},  # serialized at once
        "state": dataclasses.asdict(state),
        "rng": global_rng_state(),
    }


def policy_from_checkpoint(checkpoint: dict) -> tuple[TrainConfig, GaussianMLPPolicy]:
    """The config and the policy (with its saved meta-parameters) of an RL checkpoint."""
    if checkpoint.get("kind") != KIND:
        raise CheckpointError(f"not an RL training checkpoint (kind {checkpoint.get('kind')!r})")
    try:
        config = config_from_dict(TrainConfig, checkpoint["config"], "checkpoint config")
    except ConfigError as error:
        raise CheckpointError(f"{error} (written by metarl {_writer(checkpoint)})") from None
    policy = build_policy(config)
    policy.load_state_dict(checkpoint["policy"])
    return config, policy


def _writer(checkpoint: dict) -> str:
    return str(checkpoint.get("metarl_version", "unknown"))


def check_algorithm_version(checkpoint: dict, path: Path) -> None:
    """Refuse a checkpoint whose training computed something else than this metarl does."""
    saved = checkpoint.get("algorithm_version")
    if saved != metarl.ALGORITHM_VERSION:
        raise CheckpointError(
            f"{path} was written by metarl {_writer(checkpoint)} with algorithm version {saved}; "
            f"this metarl ({metarl.__version__}) trains with algorithm version "
            f"{metarl.ALGORITHM_VERSION} (see the README's changes): resuming would mix two "
            f"algorithms. Restart the run, or resume it with metarl {_writer(checkpoint)}"
        )


@dataclass
class ResumePoint:
    config: TrainConfig
    policy: GaussianMLPPolicy
    state: TrainingState


def resume_point(run_dir: Path, overrides: dict | None = None) -> ResumePoint:
    """The config, policy and counters to continue `run_dir` with; writes the new config.yaml.

    `overrides` may change the run settings and raise `iterations`; anything else
    that differs from the checkpoint's config is refused, naming the keys.
    """
    run_dir = Path(run_dir)
    config = load_config(TrainConfig, run_dir / "config.yaml")
    path = run_dir / CHECKPOINT
    checkpoint = load_checkpoint(path)
    check_algorithm_version(checkpoint, path)
    saved_config, policy = policy_from_checkpoint(checkpoint)
    overrides = dict(overrides or {})
    allowed = run_setting_keys(TrainConfig)
    refused = sorted(set(overrides) - allowed)
    if refused:
        raise ConfigError(
            f"--resume: {refused} cannot change in a resumed run; these can: {sorted(allowed)}"
        )
    config = config_from_dict(
        TrainConfig,
        {**dataclasses.asdict(config), **overrides},
        f"{run_dir / 'config.yaml'} with --set",
    )
    saved, wanted = dataclasses.asdict(saved_config), dataclasses.asdict(config)
    changed = sorted(k for k in wanted if k not in allowed and saved[k] != wanted[k])
    if changed:
        raise CheckpointError(
            f"{run_dir / 'config.yaml'} differs from the checkpoint's config in {changed}; "
            "a resumed run must keep its config (only run settings may change)"
        )
    state = TrainingState(**checkpoint["state"])
    if config.iterations < state.iteration:
        raise ConfigError(
            f"--set iterations={config.iterations}: the run has already done {state.iteration}"
        )
    set_global_rng_state(checkpoint["rng"])
    write_text_file(run_dir / "config.yaml", config_to_yaml(config))
    return ResumePoint(config, policy, state)


def fork_run(checkpoint: Path, run_dir: Path, changes: dict) -> int:
    """Make `run_dir` a new run that continues `checkpoint` with its config changed by
    `changes` (settings that define the result, e.g. {"hvp_subsample": 1.0}); returns the
    checkpoint's iteration, where the new run goes on. `metarl train --resume run_dir`
    then continues it exactly as the original would have, but for the changes."""
    run_dir = Path(run_dir)
    if (run_dir / CHECKPOINT).exists():
        raise CheckpointError(f"{run_dir} holds a run already; a fork goes into a new directory")
    payload = load_checkpoint(checkpoint)
    check_algorithm_version(payload, Path(checkpoint))
    unknown = sorted(set(changes) - set(payload["config"]))
    if unknown:
        raise ConfigError(f"fork of {checkpoint}: no config keys {unknown}")
    payload["config"] = {**payload["config"], **changes}
    config = config_from_dict(TrainConfig, payload["config"], f"fork of {checkpoint}")
    save_checkpoint(run_dir / CHECKPOINT, payload)
    write_text_file(run_dir / "config.yaml", config_to_yaml(config))
    return int(payload["state"]["iteration"])
