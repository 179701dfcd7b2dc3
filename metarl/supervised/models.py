"""The paper's supervised networks, and calling them with functional (per-task) parameters.

- `SinusoidMLP`: 2 hidden layers of 40 ReLU units (inputs x, or x plus the task's
  amplitude and phase for the oracle).
- `ConvNet`: 4 modules of a 3x3 convolution with 64 filters and stride 2, batch norm
  and ReLU, then the spatial mean (64 features), a linear layer and softmax (in the loss).
- `OmniglotMLP`: hidden layers 256-128-64-64, each linear + batch norm + ReLU, then linear.

Batch norm keeps no running statistics (`track_running_stats=False`): every call
normalizes with the statistics of the batch it is given, in training and at test time,
as the paper's implementation does, and nothing carries over from one task to the next.

With `context_dim > 0` a model owns free parameters `context` (z) concatenated to its
input: the context-vector comparison method adapts only z (Rei, 2015; the paper's
appendix C.2). For the MLPs z is a vector of `context_dim` values. For the conv net z is
`context_dim` image-shaped channels, one free value per pixel, concatenated channel-wise
with the image: a z constant over the pixels would be removed by the first batch norm
(which subtracts each channel's mean over the batch and the pixels), but a pattern over
the pixels is not, so z can carry what the inner loop learned from the support set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from metarl.params import Params

CONTEXT = "context"  # the name of the context vector parameter


class SinusoidMLP(nn.Module):
    """x [n, in_features] -> y [n, 1] through ReLU hidden layers."""

    def __init__(
        self, in_features: int = 1, hidden_sizes: Sequence[int] = (40, 40), context_dim: int = 0
    ):
        super().__init__()
        if context_dim:
            self.context = nn.Parameter(torch.zeros(context_dim))
        layers: list[nn.Module] = []
        width = in_features + context_dim
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, CONTEXT):
            x = torch.cat([x, self.context.expand(*x.shape[:-1], -1)], dim=-1)
        return self.net(x)


def _conv_block(in_channels: int, filters: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, filters, kernel_size=3, stride=2, padding=1),
        nn.BatchNorm2d(filters, track_running_stats=False),
        nn.ReLU(),
    )


class ConvNet(nn.Module):
    """Images [n, 1, 28, 28] -> class logits [n, ways]; 28 -> 14 -> 7 -> 4 -> 2 pixels.

    context_dim: channels of the image-shaped z [context_dim, image_size, image_size].
    """

    def __init__(self, ways: int, filters: int = 64, context_dim: int = 0, image_size: int = 28):
        super().__init__()
        if context_dim:
            self.context = nn.Parameter(torch.zeros(context_dim, image_size, image_size))
        self.features = nn.Sequential(
            _conv_block(1 + context_dim, filters),
            *(_conv_block(filters, filters) for _ in range(3)),
        )
        self.head = nn.Linear(filters, ways)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, CONTEXT):
            x = torch.cat([x, self.context.expand(x.shape[0], -1, -1, -1)], dim=1)
        return self.head(self.features(x).mean(dim=(-2, -1)))


class OmniglotMLP(nn.Module):
    """Images [n, 1, 28, 28] (flattened) -> class logits [n, ways]; the non-convolutional net."""

    def __init__(
        self, ways: int, hidden_sizes: Sequence[int] = (256, 128, 64, 64), context_dim: int = 0
    ):
        super().__init__()
        if context_dim:
            self.context = nn.Parameter(torch.zeros(context_dim))
        layers: list[nn.Module] = []
        width = 28 * 28 + context_dim
        for size in hidden_sizes:
            layers += [
                nn.Linear(width, size),
                nn.BatchNorm1d(size, track_running_stats=False),
                nn.ReLU(),
            ]
            width = size
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, ways)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if hasattr(self, CONTEXT):
            x = torch.cat([x, self.context.expand(x.shape[0], -1)], dim=-1)
        return self.head(self.features(x))


def model_params(model: nn.Module) -> Params:
    """The model's parameters by name (the live tensors: updating them updates the model)."""
    return dict(model.named_parameters())


def batched_forward(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    stacked: Iterable[str] = (),
    use_vmap: bool = True,
) -> torch.Tensor:
    """Outputs [T, n, ...] of T tasks' inputs x [T, n, ...].

    params[name] is a per-task stack [T, ...] for the names in `stacked` and shared by
    all tasks otherwise. With `use_vmap` the T calls are one `torch.func.vmap` call;
    else a Python loop over tasks (same values, for comparison and debugging).
    """
    stacked = set(stacked)
    if use_vmap:
        in_dims = ({n: (0 if n in stacked else None) for n in params}, 0)
        return vmap(lambda p, xs: functional_call(model, p, (xs,)), in_dims=in_dims)(params, x)
    outputs = []
    for task in range(x.shape[0]):
        task_params = {n: (p[task] if n in stacked else p) for n, p in params.items()}
        outputs.append(functional_call(model, task_params, (x[task],)))
    return torch.stack(outputs)
