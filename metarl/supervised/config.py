"""Supervised experiment configuration: one frozen dataclass, validated before any work.

The YAML keys are the field names of `SupervisedConfig`; `metarl.config_validation.config_from_dict`
checks types, choices and ranges, and `__post_init__` rejects combinations that do not
make sense (e.g. the oracle on Omniglot), each error naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from metarl.config_validation import (
    MAX_SEED,
    MAX_THREADS,
    ConfigError,
    at_least,
    choices,
    run_setting,
    within,
)

PROBLEMS = ("sinusoid", "omniglot")
SUPERVISED_ALGORITHMS = ("maml", "pretrain", "oracle", "multitask", "context")
# which algorithms each problem supports (the paper's sinusoid comparison methods need the task's
# amplitude/phase or a regression target shared across tasks; Omniglot labels are permuted)
PROBLEM_ALGORITHMS = {
    "sinusoid": ("maml", "pretrain", "oracle", "multitask", "context"),
    "omniglot": ("maml", "context"),
}
PROBLEM_MODELS = {"sinusoid": ("mlp",), "omniglot": ("conv", "mlp")}
OMNIGLOT_DRAWINGS = 20  # drawings of every Omniglot character
MAX_ADAM_LR = 1e30  # torch's Adam holds its step size as a float32 (largest 3.4e38)
# the data shipped with a source checkout (a relative data_path in a config file is read
# relative to that file; on the command line relative to the working directory)
SHIPPED_OMNIGLOT = Path(__file__).resolve().parents[2] / "data" / "omniglot"


def _positive_list(values):
    if not values or any(v <= 0 for v in values):
        return "must be a non-empty list of positive numbers"
    return None


@dataclass(frozen=True)
class SupervisedConfig:
    """One supervised meta-learning experiment; defaults are the paper's sinusoid setting."""

    problem: str = field(metadata={"choices": PROBLEMS})
    algorithm: str = field(default="maml", metadata={"choices": SUPERVISED_ALGORITHMS})
    seed: int = field(default=0, metadata=within(0, MAX_SEED))
    iterations: int = field(default=70000, metadata=at_least(1))
    meta_batch_size: int = field(default=25, metadata=at_least(1))
    inner_steps: int = field(default=1, metadata=at_least(1))
    inner_lr: float = field(default=0.01, metadata=at_least(0, strict=True))
    # Adam step size of the meta-optimizer (pretrain/oracle/multitask: of their training)
    meta_lr: float = field(default=0.001, metadata=within(0, MAX_ADAM_LR, open_low=True))
    first_order: bool = False
    vmap: bool = True  # tasks of a meta-batch in one torch.func.vmap call
    # tasks per batched call (0: the whole meta-batch); gradients are summed over chunks,
    # so this bounds memory (and helps the conv net's speed) without changing the result
    task_chunk: int = field(default=0, metadata=at_least(0))
    shots: int = field(default=10, metadata=at_least(1))  # K: support examples (per class)
    ways: int = field(default=5, metadata=at_least(2))  # N: classes per Omniglot task
    query: int = field(default=10, metadata=at_least(1))  # query examples (per class)
    # model: None picks the problem's default (sinusoid: mlp, omniglot: conv)
    model: str | None = field(default=None, metadata={"choices": ("mlp", "conv")})
    hidden_sizes: list[int] = field(default_factory=lambda: [40, 40])  # sinusoid MLP
    # folder of images_background*.zip, or one zip
    data_path: str = field(default=str(SHIPPED_OMNIGLOT), metadata={"path": True})
    split: list[float] = field(  # fractions of characters: meta-train, -validation, -test
        default_factory=lambda: [0.7, 0.1, 0.2], metadata={"check": _positive_list}
    )
    split_seed: int = field(default=0, metadata=within(0, MAX_SEED))
    # z of the context vector: its size (sinusoid); image-shaped channels of it (Omniglot conv)
    context_dim: int = field(default=4, metadata=at_least(1))
    multitask_models: int = field(default=500, metadata=at_least(1))
    multitask_batch: int = field(default=100, metadata=at_least(1))  # points per step
    multitask_reg: str = field(default="none", metadata={"choices": ("none", "l2", "mean")})
    multitask_reg_weight: float = field(default=0.0, metadata=at_least(0))
    # step sizes tried when fine-tuning the pretrain/multitask comparisons (tuned on
    # meta-validation tasks at the end of training, as the paper's "tuned step size")
    lr_grid: list[float] = field(
        default_factory=lambda: [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0],
        metadata={"check": _positive_list},
    )
    eval_steps: int = field(default=10, metadata=at_least(1))
    eval_tasks: int = field(default=600, metadata=at_least(2))
    eval_shots: list[int] | None = None  # K values at evaluation (None: [shots])
    eval_query: int | None = field(default=None, metadata=at_least(1))  # None: query
    val_interval: int = field(default=500, metadata=at_least(1))
    val_tasks: int = field(default=100, metadata=at_least(2))
    log_interval: int = field(default=50, metadata=at_least(1))
    checkpoint_interval: int = field(default=1000, metadata=at_least(1))
    torch_threads: int = field(default=0, metadata=within(0, MAX_THREADS))  # 0: one per core
    # where the model, the task batches and the meta-step (inner adaptation with its graph,
    # Adam) run, and evaluation; tasks are drawn on the CPU and moved once per batch.
    # auto: CUDA where available, else CPU. The RL config's key of the same name.
    device: str = field(default="auto", metadata=run_setting(**choices("auto", "cpu", "cuda")))

    def __post_init__(self):
        if self.algorithm not in PROBLEM_ALGORITHMS[self.problem]:
            raise ConfigError(
                f"key 'algorithm': {self.algorithm!r} is not available for problem "
                f"{self.problem!r}; choose one of {list(PROBLEM_ALGORITHMS[self.problem])}"
            )
        if self.model is not None and self.model not in PROBLEM_MODELS[self.problem]:
            raise ConfigError(
                f"key 'model': {self.model!r} is not available for problem {self.problem!r}; "
                f"choose one of {list(PROBLEM_MODELS[self.problem])}"
            )
        if self.algorithm == "context" and self.problem == "omniglot" and self.model == "mlp":
            raise ConfigError(
                "key 'model': the context vector needs the conv net on Omniglot; in the mlp "
                "the first layer's batch norm cancels a constant input vector z exactly"
            )
        if not self.hidden_sizes or any(size < 1 for size in self.hidden_sizes):
            raise ConfigError(f"key 'hidden_sizes': sizes must be >= 1, got {self.hidden_sizes}")
        if any(k < 1 for k in self.eval_shots or []) or self.eval_shots == []:
            raise ConfigError(f"key 'eval_shots': must list K values >= 1, got {self.eval_shots}")
        if self.problem == "omniglot":
            self._check_omniglot()

    def _check_omniglot(self) -> None:
        if len(self.split) != 3:
            raise ConfigError(f"key 'split': expected 3 fractions, got {self.split}")
        largest_shots = max([self.shots, *(self.eval_shots or [])])
        for key in ("query", "eval_query"):
            query = getattr(self, key) or self.query
            if largest_shots + query > OMNIGLOT_DRAWINGS:
                raise ConfigError(
                    f"key {key!r}: shots + query = {largest_shots} + {query} exceeds the "
                    f"{OMNIGLOT_DRAWINGS} drawings of an Omniglot character"
                )
        path = Path(self.data_path)
        if not path.exists():
            where = "" if path.is_absolute() else f" (here: {path.absolute()})"
            raise ConfigError(
                f"key 'data_path': {self.data_path!r}{where} does not exist (expected a folder "
                "holding images_background*.zip, or one such zip)"
            )
        if path.is_dir() and not sorted(path.glob("images_background*.zip")):
            raise ConfigError(f"key 'data_path': no images_background*.zip in {self.data_path!r}")

    def divergence_advice(self, first_step: bool) -> str:
        """Which step size to lower when training diverged: the inner loop's or Adam's."""
        inner, outer = f"inner_lr (now {self.inner_lr:g})", f"meta_lr (now {self.meta_lr:g})"
        if not self.meta_learned:
            return f"the step size is too large: lower {outer}"
        if first_step:  # the initial parameters are finite: the inner step diverged
            return f"the inner step diverged at once: lower {inner}"
        return f"a step size is too large: lower {inner} or {outer}"

    @property
    def model_kind(self) -> str:
        """The network: the configured `model`, or the problem's default."""
        return self.model or PROBLEM_MODELS[self.problem][0]

    @property
    def shots_to_evaluate(self) -> list[int]:
        return list(self.eval_shots or [self.shots])

    @property
    def query_to_evaluate(self) -> int:
        return self.eval_query or self.query

    @property
    def meta_learned(self) -> bool:
        """True for the algorithms trained through an inner loop (MAML, context vector)."""
        return self.algorithm in ("maml", "context")
