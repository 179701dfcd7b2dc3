"""The RL experiment's configuration: `TrainConfig`, validated before any work starts.

The YAML keys are the field names of `TrainConfig`. The base layer
(`metarl.config_validation`: `load_config(TrainConfig, path, overrides)`) checks them: an
unknown key, a value of the wrong type, an out-of-range value, conflicting keys or an
unknown env id raises `ConfigError` naming the key (and the valid choices where there are
some).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import metarl_envs
from metarl.config_validation import (
    MAX_SEED,
    MAX_THREADS,
    ConfigError,
    at_least,
    choices,
    fraction,
    run_setting,
    within,
)

HVP_METHODS = ("finite_difference", "finite_difference_central", "exact")
ALGORITHMS = ("maml", "pretrain", "oracle", "context")
# each algorithm's policy under its name in an evaluation (`metarl eval`, eval.json)
EVALUATED_AS = {"maml": "maml", "pretrain": "pretrained", "oracle": "oracle", "context": "context"}
META_LOG_STD = ("learned", "fixed")  # does the TRPO step update the policy's log_std?


def _ray_address(value: str):
    """None (start a local Ray), "auto", or host:port (optionally ray://host:port)."""
    host, sep, port = value.removeprefix("ray://").rpartition(":")
    if value == "auto" or (sep and host and port.isdigit()):
        return None
    return "must be 'auto' or host:port (e.g. 10.0.0.1:6379)"


# Limits that make a typo a message at load, not a failure later (README, "Limits"; seeds and
# threads: config_validation): a log-std within +-20 keeps exp(2 log_std) far inside float32's
# exp(+-88); counts no machine runs. Array sizes: metarl.experiment.check_memory.
MAX_LOG_STD = 20.0
MAX_WORKERS = 10_000
MAX_ENVS = 10_000
MAX_TIMEOUT_S = 1e6  # 11.6 days


@dataclass(frozen=True)
class TrainConfig:
    """One experiment. Defaults are the MAML paper's (navigation scale where they differ)."""

    env: str = field(metadata=choices(*metarl_envs.ALL_ENV_IDS))
    # maml: the paper's method. pretrain: TRPO on tasks of the whole distribution, no
    # adaptation in training. oracle: TRPO on the env's oracle=True variant (task in the
    # observation). context: MAML-TRPO adapting only a context vector z fed to the policy.
    algorithm: str = field(default="maml", metadata=choices(*ALGORITHMS))
    seed: int = field(default=0, metadata=within(0, MAX_SEED))
    iterations: int = field(default=500, metadata=run_setting(**at_least(1)))  # may grow
    meta_batch_size: int = field(default=20, metadata=at_least(1))
    rollouts_per_task: int = field(default=20, metadata=at_least(1))
    horizon: int | None = field(default=None, metadata=at_least(1))  # None: the env's
    inner_steps: int = field(default=1, metadata=at_least(1))
    inner_lr: float = field(default=0.1, metadata=at_least(0, strict=True))
    first_order: bool = False
    # exact: double backward. The paper's finite differences of the KL gradient are wrong
    # for MAML with ReLU policies: the inner gradient of a ReLU network jumps when a unit
    # switches, so theta'(theta) is discontinuous and the difference quotient counts the
    # jumps (README, "The Hessian-vector products"). They are right for tanh policies and
    # for the baselines, which have no inner step (`hvp_warning`).
    hvp: str = field(default="exact", metadata=choices(*HVP_METHODS))
    hvp_epsilon: float = field(default=1e-3, metadata=at_least(0, strict=True))
    hvp_subsample: float = field(default=1.0, metadata=fraction())
    max_kl: float = field(default=0.01, metadata=at_least(0, strict=True))
    cg_iters: int = field(default=10, metadata=at_least(1))
    cg_damping: float = field(default=1e-5, metadata=at_least(0))
    line_search_ratio: float = field(default=0.8, metadata=fraction(below_one=True))
    line_search_steps: int = field(default=15, metadata=at_least(1))
    gamma: float = field(default=0.99, metadata=fraction())
    gae_lambda: float = field(default=1.0, metadata=within(0, 1))
    normalize_advantages: bool = True
    hidden_sizes: list[int] = field(default_factory=lambda: [100, 100])
    activation: str = field(default="relu", metadata=choices("relu", "tanh"))
    init_log_std: float = field(default=0.0, metadata=within(-MAX_LOG_STD, MAX_LOG_STD))
    # learned: TRPO's step updates log_std with the other parameters (the MAML paper). fixed:
    # log_std stays init_log_std in TRPO's step; the inner loop still adapts it per task.
    # MAML's meta-gradient does not credit the exploration of theta's rollouts, so a learned
    # log_std can shrink until adaptation suffers (README, Navigation2D). The baselines that
    # `metarl eval` trains keep learned (metarl.comparisons.baseline_config).
    meta_log_std: str = field(default="learned", metadata=choices(*META_LOG_STD))
    sampler: str = field(default="local", metadata=run_setting(**choices("local", "ray")))
    num_envs: int = field(default=400, metadata=run_setting(**within(1, MAX_ENVS)))  # at once
    # sampler: local, HalfCheetah and Ant: threads that step the env copies' physics side by
    # side (the same rollouts, bitwise; README, "Ray sampler speed")
    physics_threads: int = field(default=1, metadata=run_setting(**within(1, MAX_THREADS)))
    # sampler: ray (see README, Ray sampler); num_workers 0: one per CPU
    num_workers: int = field(default=0, metadata=run_setting(**within(0, MAX_WORKERS)))
    envs_per_worker: int = field(default=200, metadata=run_setting(**within(1, MAX_ENVS)))
    ray_address: str | None = field(default=None, metadata=run_setting(check=_ray_address))
    ray_dashboard: bool = field(default=False, metadata=run_setting())  # a local Ray's
    worker_timeout_s: float = field(
        default=600.0, metadata=run_setting(**within(0, MAX_TIMEOUT_S, open_low=True))
    )
    max_consecutive_failures: int = field(default=3, metadata=run_setting(**at_least(1)))
    torch_threads: int = field(default=0, metadata=run_setting(**within(0, MAX_THREADS)))  # 0: all
    # where the learner runs (adaptation with its graph, meta-gradient, conjugate gradient,
    # line search); sampling stays on CPU processes. auto: CUDA where available, else CPU.
    device: str = field(default="auto", metadata=run_setting(**choices("auto", "cpu", "cuda")))
    context_size: int = field(default=4, metadata=at_least(1))  # algorithm: context
    # iterations between checkpoints; 1 (about 3 ms each) loses nothing even when the process
    # is killed from outside (SIGKILL, or Ray ending a driver whose node died)
    checkpoint_every: int = field(default=1, metadata=run_setting(**at_least(1)))
    # evaluation: inner step k uses eval_step_sizes[k] (the last one for further steps)
    eval_step_sizes: list[float] = field(default_factory=lambda: [0.1, 0.05])
    # evaluation of pretrain / random init: the fine-tuning step size is tuned on this grid
    finetune_step_sizes: list[float] = field(
        default_factory=lambda: [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    )

    def __post_init__(self):
        problem = metarl_envs.missing_extra(self.env)
        if problem:
            raise ConfigError(f"key 'env': {self.env} cannot be made here. {problem}")
        if not self.hidden_sizes or any(size < 1 for size in self.hidden_sizes):
            raise ConfigError(f"key 'hidden_sizes': sizes must be >= 1, got {self.hidden_sizes}")
        if self.physics_threads > 1 and self.env not in metarl_envs.PHYSICS_THREADS_ENV_IDS:
            raise ConfigError(
                f"key 'physics_threads': {self.env} steps its copies in one thread; threaded "
                f"physics is for {', '.join(metarl_envs.PHYSICS_THREADS_ENV_IDS)}"
            )
        if self.physics_threads > 1 and self.sampler == "ray":
            raise ConfigError(
                "key 'physics_threads' is for sampler: local; the Ray sampler runs one actor "
                "per CPU (num_workers)"
            )
        if self.ray_address is not None and self.sampler != "ray":
            raise ConfigError(
                f"key 'ray_address' (or --ray-address) is for sampler: ray, not {self.sampler!r}"
                ": add --set sampler=ray, or drop the address"
            )
        for key in ("eval_step_sizes", "finetune_step_sizes"):
            sizes = getattr(self, key)
            if not sizes or any(size <= 0 for size in sizes):
                raise ConfigError(f"key {key!r}: step sizes must be > 0, got {sizes}")


def hvp_warning(config: TrainConfig) -> str | None:
    """Why `config`'s Hessian-vector products are unreliable, or None when they are sound."""
    adapts = config.algorithm in ("maml", "context")
    if adapts and config.hvp != "exact" and config.activation == "relu":
        return (
            f"hvp: {config.hvp} with activation: relu differentiates across the jumps of the "
            "ReLU network's inner gradient: the Hessian-vector products are wrong and TRPO's "
            "steps leave the trust region (README, 'The Hessian-vector products'); "
            "use --set hvp=exact"
        )
    return None
