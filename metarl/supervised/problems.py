"""What a configured problem is: its tasks per split, its network, its loss and inner loop.

Task streams: every batch of tasks is drawn from a generator seeded by (seed, stream,
index), so meta-training, meta-validation, test-time evaluation and the multi-task
regressors never share a sinusoid, and a run is reproducible from its seed. For
Omniglot the splits are also disjoint sets of classes (`omniglot.split_classes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from metarl.supervised import omniglot
from metarl.supervised.config import SupervisedConfig
from metarl.supervised.maml import InnerLoop
from metarl.supervised.models import CONTEXT, ConvNet, OmniglotMLP, SinusoidMLP
from metarl.supervised.tasks import TaskBatch, sample_sinusoid_tasks, seeded_rng, with_task_params

STREAMS = {"train": 0, "val": 1, "test": 2, "multitask": 3}
SINUSOID_PARAMS = 2  # amplitude and phase, the oracle's extra inputs


@dataclass
class TaskSampler:
    """Draws batches of tasks of one problem from its meta-train/-validation/-test split."""

    config: SupervisedConfig
    data: omniglot.OmniglotImages | None = None
    classes: dict[str, np.ndarray] | None = None

    def sample(
        self, split: str, rng: np.random.Generator, num_tasks: int, shots: int, query: int
    ) -> TaskBatch:
        if self.config.problem == "sinusoid":
            batch = sample_sinusoid_tasks(rng, num_tasks, shots, query)
            if self.config.algorithm == "oracle":
                batch.support_x = with_task_params(batch.support_x, batch.task_params)
                batch.query_x = with_task_params(batch.query_x, batch.task_params)
            return batch
        return omniglot.sample_omniglot_tasks(
            self.data, self.classes[split], rng, num_tasks, self.config.ways, shots, query
        )

    def batches(
        self, split: str, seed: int, num_tasks: int, shots: int, query: int, chunk: int
    ) -> list[TaskBatch]:
        """`num_tasks` tasks of `split` from seed `seed`, in chunks of at most `chunk` tasks."""
        rng = seeded_rng(seed, STREAMS[split])
        sizes = [min(chunk, num_tasks - start) for start in range(0, num_tasks, chunk)]
        return [self.sample(split, rng, size, shots, query) for size in sizes]


def make_task_sampler(config: SupervisedConfig) -> TaskSampler:
    """The problem's task sampler; for Omniglot this decodes the zips (a clear error if bad)."""
    if config.problem == "sinusoid":
        return TaskSampler(config)
    data = omniglot.load_omniglot(config.data_path)
    classes = omniglot.split_classes(len(data.names), config.split, config.split_seed)
    for split, ids in classes.items():
        if len(ids) < config.ways:
            raise omniglot.OmniglotDataError(
                f"key 'split': the {split} split has {len(ids)} classes, fewer than "
                f"ways={config.ways}; use more data or larger fractions"
            )
    return TaskSampler(config, data, classes)


FLOAT_BYTES = 4
IMAGE_FLOATS = omniglot.IMAGE_SIZE**2
FILTERS = 64
# floats a forward pass keeps per image and layer (conv: 64 filters at 14, 7, 4, 2 pixels)
CONV_FLOATS = FILTERS * (14 * 14 + 7 * 7 + 4 * 4 + 2 * 2)
OMNIGLOT_MLP_SIZES = (256, 128, 64, 64)


def parameter_count(config: SupervisedConfig) -> int:
    """The number of parameters `build_model(config)` has (computed, nothing allocated)."""
    context = config.context_dim if config.algorithm == "context" else 0
    if config.problem == "omniglot" and config.model_kind == "conv":
        first = 9 * FILTERS * (1 + context) + FILTERS
        convs = first + 3 * (9 * FILTERS**2 + FILTERS) + 4 * 2 * FILTERS  # + batch norms
        return context * IMAGE_FLOATS + convs + (FILTERS + 1) * config.ways  # z: image-shaped
    norms = 0
    if config.problem == "omniglot":
        widths = [IMAGE_FLOATS + context, *OMNIGLOT_MLP_SIZES, config.ways]
        norms = 2 * sum(OMNIGLOT_MLP_SIZES)
    else:
        inputs = 1 + (SINUSOID_PARAMS if config.algorithm == "oracle" else 0)
        widths = [inputs + context, *config.hidden_sizes, 1]
    return context + norms + sum((a + 1) * b for a, b in zip(widths, widths[1:]))


def memory_estimate(config: SupervisedConfig) -> int:
    """Bytes meta-training needs at least: a meta-batch's data and activations, the
    validation tasks' data, the multi-task regressors, the per-task parameter stacks.

    Each layer keeps its output, batch-normalized and activated copies (3 floats per
    unit) for every inner step of the graph.
    """
    if config.problem == "sinusoid":
        inputs, units, examples = 3, sum(config.hidden_sizes), 1  # examples: per shot
    else:
        units = CONV_FLOATS if config.model_kind == "conv" else sum(OMNIGLOT_MLP_SIZES)
        inputs, examples = IMAGE_FLOATS, config.ways
    per_example = inputs + 3 * units * (config.inner_steps + 1)
    batch = config.meta_batch_size * examples * (config.shots + config.query) * per_example
    shots = max(config.shots_to_evaluate)
    validation = config.val_tasks * examples * (shots + config.query_to_evaluate) * inputs
    params = parameter_count(config)
    multitask = 0
    if config.algorithm == "multitask":
        multitask = config.multitask_models * (config.multitask_batch * per_example + 4 * params)
    stacks = params * (4 + config.meta_batch_size * config.inner_steps)
    return FLOAT_BYTES * (batch + validation + multitask + stacks)


def build_model(config: SupervisedConfig) -> nn.Module:
    """The problem's network, initialized from the run seed."""
    torch.manual_seed(config.seed)
    context_dim = config.context_dim if config.algorithm == "context" else 0
    if config.problem == "sinusoid":
        inputs = 1 + (SINUSOID_PARAMS if config.algorithm == "oracle" else 0)
        return SinusoidMLP(inputs, config.hidden_sizes, context_dim)
    if config.model_kind == "conv":
        return ConvNet(config.ways, context_dim=context_dim)
    return OmniglotMLP(config.ways, context_dim=context_dim)


def loss_name(config: SupervisedConfig) -> str:
    return "mse" if config.problem == "sinusoid" else "cross_entropy"


def adapted_names(config: SupervisedConfig) -> tuple[str, ...] | None:
    """What the inner loop / fine-tuning changes: z only, nothing (oracle), or everything."""
    if config.algorithm == "context":
        return (CONTEXT,)
    if config.algorithm == "oracle":
        return ()
    return None


def training_inner_loop(config: SupervisedConfig) -> InnerLoop:
    """The inner loop of meta-training (MAML and the context vector)."""
    return InnerLoop(
        loss_name(config),
        config.inner_steps,
        config.inner_lr,
        config.first_order,
        adapted_names(config),
        config.vmap,
    )


def evaluation_inner_loop(config: SupervisedConfig, step_size: float, steps: int) -> InnerLoop:
    """Test-time fine-tuning: `steps` plain gradient steps of `step_size` on the support set."""
    return InnerLoop(loss_name(config), steps, step_size, True, adapted_names(config), config.vmap)
