"""The comparison methods `metarl eval --baselines` measures MAML against: given, reused or trained.

(These are the paper's baselines; the value baseline of the advantages is `value_baseline`.)

`--baselines pretrained,random,oracle,context` names the methods; `name=PATH`
uses an existing checkpoint (or run directory) instead. A method without a path
is trained by the ordinary trainer (`algorithm: pretrain | oracle | context`)
with the evaluated run's config into `<run dir>/baselines/<name>/`: a finished
run there is reused, an unfinished one resumed, so repeating the command costs
nothing and an interrupted one picks up where it stopped. Of every run directory,
the evaluated one and the baselines', `--checkpoint best|last` evaluates best.pt
(the default: the paper keeps the best iteration) or checkpoint.pt. `--device` is the
trained baselines' learner device (a run setting: a baseline run may resume on another).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
from torch import nn

import metarl_envs
from metarl.checkpoints import CheckpointError, load_checkpoint
from metarl.config import EVALUATED_AS, TrainConfig
from metarl.config_validation import ConfigError, config_from_dict
from metarl.evaluation import METHODS, random_policy
from metarl.experiment import algorithm_setup
from metarl.resuming import BEST, CHECKPOINT, policy_from_checkpoint
from metarl.trainer import resume, train

TRAINED_BY = {method: algorithm for algorithm, method in EVALUATED_AS.items() if method != "maml"}
CHECKPOINT_CHOICES = {"best": BEST, "last": CHECKPOINT}  # `metarl eval --checkpoint`
DEFAULT_CHECKPOINT = "best"


def checkpoint_path(path: Path, which: str = DEFAULT_CHECKPOINT) -> Path:
    """A checkpoint file as given; of a run directory best.pt ('best') or checkpoint.pt ('last')."""
    path = Path(path)
    if not path.is_dir():
        return path
    chosen = path / CHECKPOINT_CHOICES[which]
    if not chosen.is_file():
        other = next(k for k in CHECKPOINT_CHOICES if k != which)
        raise CheckpointError(
            f"{path} has no {chosen.name} (--checkpoint {which}); try --checkpoint {other}"
        )
    return chosen


def run_checkpoint(path: Path, checkpoint: dict) -> dict | None:
    """The checkpoint that says where `path`'s run stands now (None: none to read).

    That is the checkpoint itself, or for best.pt the checkpoint.pt beside it: best.pt's
    config may predate a resume that raised `iterations` or changed run settings.
    """
    path = Path(path)
    if path.name != BEST:
        return checkpoint
    try:
        return load_checkpoint(path.parent / CHECKPOINT)
    except CheckpointError:
        return None


def run_config(path: Path, checkpoint: dict, config: TrainConfig) -> TrainConfig:
    """The config of `path`'s run as it is now (`config`: the checkpoint's own).

    Baselines are trained with it, so that they match the run, not an older state of it.
    """
    run = run_checkpoint(path, checkpoint)
    if run is None or run is checkpoint or run.get("kind") != checkpoint.get("kind"):
        return config
    return config_from_dict(TrainConfig, run["config"], f"{Path(path).parent / CHECKPOINT} config")


def describe_checkpoint(path: Path, checkpoint: dict) -> str:
    """'PATH (iteration N, best checkpoint; the run has done D of M iterations)'.

    N counts the meta-updates before these parameters. best.pt holds the iteration with
    the highest post-adaptation training return; how far its run got is read from the
    checkpoint.pt beside it (see `run_checkpoint`).
    """
    path = Path(path)
    kind = {BEST: "best checkpoint", CHECKPOINT: "last checkpoint"}.get(path.name, "checkpoint")
    text = f"{path} (iteration {_iteration(checkpoint)}, {kind}"
    run = run_checkpoint(path, checkpoint)
    if run is not None and "iterations" in run.get("config", {}):
        text += f"; the run has done {_iteration(run)} of {run['config']['iterations']} iterations"
    return text + ")"


def _iteration(checkpoint: dict) -> int:
    """Meta-updates before the checkpoint's parameters (RL: in `state`; supervised: top level)."""
    return checkpoint["state"]["iteration"] if "state" in checkpoint else checkpoint["iteration"]


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


def baseline_config(config: TrainConfig, method: str, device: str | None = None) -> TrainConfig:
    """The evaluated run's config for training baseline `method` (on `device`, else the run's).

    Always with a learned log-std: `meta_log_std: fixed` answers a MAML problem (its
    meta-gradient does not credit the exploration of theta's rollouts, see README,
    Navigation2D). pretrain and oracle take TRPO steps on the return of the policy that
    sampled, which credits it, and context adapts only z, so a fixed log-std would never
    be learned. The baselines are the paper's, whatever the run's setting.
    """
    return dataclasses.replace(
        config,
        algorithm=TRAINED_BY[method],
        device=device or config.device,
        meta_log_std="learned",
    )


def trains_baselines(baselines: dict[str, Path | None]) -> bool:
    """Whether `baseline_policies` trains (or resumes) a baseline: one named without a path."""
    return any(path is None and method != "random" for method, path in baselines.items())


def trained_baseline(
    method: str,
    config: TrainConfig,
    run_root: Path,
    show_progress: bool,
    device: str | None = None,
) -> Path:
    """Train (or reuse, or resume) the baseline `method` for `config`; its run directory.

    `device` (None: the config's) is where its learner runs; it may differ from the device
    an earlier, interrupted training of the baseline used.
    """
    run_dir = run_root / "baselines" / method
    wanted = baseline_config(config, method, device)
    checkpoint = run_dir / CHECKPOINT
    if checkpoint.is_file():
        saved = load_checkpoint(checkpoint)
        saved_config, _ = policy_from_checkpoint(saved)
        if dataclasses.replace(saved_config, device=wanted.device) != wanted:
            raise CheckpointError(
                f"{run_dir} holds a {method} run with another config; "
                f"remove it or pass --baselines {method}=PATH"
            )
        if saved["state"]["iteration"] < wanted.iterations:
            print(f"resuming the {method} baseline in {run_dir}")
            resume(run_dir, {"device": device} if device else None, show_progress)
        else:
            print(f"reusing the {method} baseline in {run_dir}")
        return run_dir
    if run_dir.exists() and any(run_dir.iterdir()):
        raise CheckpointError(f"{run_dir} exists without a checkpoint; remove it to retrain")
    print(f"training the {method} baseline ({wanted.iterations} iterations) in {run_dir}")
    train(wanted, run_dir, show_progress)
    return run_dir


def baseline_policies(
    baselines: dict[str, Path | None],
    config: TrainConfig,
    run_root: Path,
    show_progress: bool = True,
    which: str = DEFAULT_CHECKPOINT,
    device: str | None = None,
) -> dict[str, tuple[nn.Module, TrainConfig, str]]:
    """name -> (policy, its config, source) for each requested baseline.

    `which` ('best' or 'last') picks the checkpoint of each baseline's run directory;
    `device` (None: the run's) is the learner device of baselines trained here.
    """
    policies = {}
    for method, path in baselines.items():
        if method == "random":
            policies[method] = (random_policy(config), config, "fresh initialization")
            continue
        if path is None:
            path = trained_baseline(method, config, run_root, show_progress, device)
        path = checkpoint_path(path, which)
        checkpoint = load_checkpoint(path)
        baseline_config_, policy = policy_from_checkpoint(checkpoint)
        if baseline_config_.algorithm != TRAINED_BY[method]:
            raise CheckpointError(
                f"{path}: a checkpoint of algorithm {baseline_config_.algorithm!r}, "
                f"not {TRAINED_BY[method]!r} as the {method} baseline needs"
            )
        if baseline_config_.env != config.env:
            raise CheckpointError(f"{path}: env {baseline_config_.env}, not {config.env}")
        policies[method] = (policy, baseline_config_, describe_checkpoint(path, checkpoint))
    return policies


def on_env(methods: dict, env_id: str) -> dict:
    """`methods` ({name: (policy, config, source)}) evaluated on `env_id` instead of their
    own env (`metarl eval --env`), refused (ConfigError) unless `env_id` has, for each
    method (the oracle sees its task), the same observation and action spaces and the same
    kind of tasks: e.g. metarl/AntVelNoTermination-v0 for an AntVel-v0 run."""
    if env_id not in metarl_envs.ALL_ENV_IDS:
        listed = [i for i in metarl_envs.ALL_ENV_IDS if i not in metarl_envs.METAWORLD_ENV_IDS]
        raise ConfigError(f"--env {env_id!r} is not a metarl env; one of {listed} or Meta-World's")
    moved = {}
    for name, (policy, config, source) in methods.items():
        kwargs = algorithm_setup(config).env_kwargs
        own, other = gym.make(config.env, **kwargs), gym.make(env_id, **kwargs)
        try:
            same = (
                own.observation_space == other.observation_space
                and own.action_space == other.action_space
                and set(own.unwrapped.sample_tasks(1)[0]) == set(other.unwrapped.sample_tasks(1)[0])
            )
        finally:
            own.close()
            other.close()
        if not same:
            raise ConfigError(
                f"--env {env_id}: its observations, actions or tasks differ from those of "
                f"{config.env}, which {name}'s policy was trained on"
            )
        moved[name] = (policy, dataclasses.replace(config, env=env_id), f"{source}, on {env_id}")
    return moved
