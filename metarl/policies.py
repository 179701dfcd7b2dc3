"""Gaussian MLP policy, called functionally so adapted parameters are plain tensors.

`policy_outputs(policy, params, observations)` runs the policy with the
parameter dict `params` through `torch.func.functional_call`. The layers are
written with `torch.matmul` and broadcasting, so the same call serves shared
parameters (`W: [out, in]`, observations `[..., N, in]`) and a stack of
per-task parameters (`W: [T, out, in]`, observations `[T, N, in]`): one
batched call for a whole meta-batch of adapted policies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call

from metarl.params import Params

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}


class GaussianMLPPolicy(nn.Module):
    """a ~ N(mu(s), diag(exp(log_std))^2), mu an MLP, log_std learned and state-independent.

    With `context_size` > 0 the MLP reads [s, z], z a learned parameter `context`.
    """

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        hidden_sizes: Sequence[int] = (100, 100),
        activation: str = "relu",
        init_log_std: float = 0.0,
        context_size: int = 0,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.observation_dim, self.action_dim = observation_dim, action_dim
        self.activation = activation
        sizes = [observation_dim + context_size, *hidden_sizes, action_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.log_std = nn.Parameter(torch.full((action_dim,), float(init_log_std)))
        if context_size:
            # Free inputs z appended to every observation (the context-vector comparison of
            # the MAML paper's appendix C); an inner loop that adapts only `context`
            # adapts the policy to a task through its input alone.
            self.context = nn.Parameter(torch.zeros(context_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Xavier-uniform weights and zero biases, as pytorch-maml-rl and rllab initialise.
        for layer in self.layers:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) with log_std shaped to broadcast against the mean."""
        return gaussian_mlp(dict(self.named_parameters()), observations, self.activation)


def gaussian_mlp(
    params: Params, observations: torch.Tensor, activation: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The policy's computation on a parameter dict named as `GaussianMLPPolicy`'s.

    The module's forward runs it on its own parameters; the sampler calls it
    directly (no module, no `functional_call` bookkeeping) for its many small calls.
    """
    act = ACTIVATIONS[activation]
    hidden, index = observations, 0
    if "context" in params:  # [c] shared or [T, c] per task, broadcast over the steps
        context = params["context"].unsqueeze(-2)
        context = context.expand(*observations.shape[:-1], context.shape[-1])
        hidden = torch.cat([observations, context], dim=-1)
    while f"layers.{index}.weight" in params:
        if index > 0:
            hidden = act(hidden)
        weight, bias = params[f"layers.{index}.weight"], params[f"layers.{index}.bias"]
        if hidden.dim() == 2 and weight.dim() == 2:  # one fused call for plain 2D inputs
            hidden = torch.addmm(bias, hidden, weight.t())
        else:
            hidden = torch.matmul(hidden, weight.transpose(-1, -2)) + bias.unsqueeze(-2)
        index += 1
    return hidden, params["log_std"].unsqueeze(-2)


def policy_params(policy: nn.Module) -> Params:
    """The policy's parameters as a name -> tensor dict (the leaves of the meta-parameters)."""
    return dict(policy.named_parameters())


def policy_outputs(
    policy: nn.Module, params: Params, observations: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, log_std) of `policy` run with `params` (shared or stacked per task)."""
    return functional_call(policy, params, (observations,))


def gaussian_kl(
    old_mean: torch.Tensor, old_log_std: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
) -> torch.Tensor:
    """KL(old || new) of diagonal Gaussians, summed over the last (action) axis."""
    variance_ratio = torch.exp(2 * (old_log_std - log_std))
    mean_term = (old_mean - mean) ** 2 * torch.exp(-2 * log_std)
    kl = log_std - old_log_std + 0.5 * (variance_ratio + mean_term - 1.0)
    return kl.sum(-1)


def gaussian_log_prob(
    mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor
) -> torch.Tensor:
    """log N(actions; mean, exp(log_std)^2) summed over the last axis (no Distribution object)."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
