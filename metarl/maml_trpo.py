"""One MAML-TRPO meta-step from sampled rollouts (MAML paper, Algorithm 3).

Given, for a meta-batch of tasks T_i, the rollouts D_i of theta (and of theta'
for further inner steps) and the validation rollouts D'_i of the adapted
policies, the step

  1. recomputes theta'_i = theta - alpha grad L_Ti(theta) on D_i, keeping the graph;
  2. fixes pi_old = pi_theta'_i(theta_old) on the validation states of D'_i;
  3. takes g, the gradient in theta of the surrogate loss
        L(theta) = -mean_i mean_t [pi_theta'_i(theta)(a|s) / pi_old(a|s) * A]
     through the inner update;
  4. solves H x = g by conjugate gradient, H the Hessian of the mean
     KL(pi_old || pi_theta'_i(theta)), its products by double backward (or finite
     differences of the KL gradient, the paper's choice; see metarl.trpo);
  5. scales the step to the trust region, beta = sqrt(2 max_kl / x'Hx), and backtracks until
     the surrogate improves with KL <= max_kl.

All tasks are computed at once: adapted parameters are [T, ...] stacks and the
steps of each task are one padded [T, M] axis (the sampler's `Rollouts`, read
as they are: advantages included). theta is the flat vector of every policy parameter
but `fixed_names` (config `meta_log_std: fixed` fixes log_std), which keep their values.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from metarl.episodes import MetaBatch
from metarl.inner import adapt, inner_step_norm
from metarl.policies import Params, gaussian_kl, gaussian_log_prob, policy_outputs
from metarl.trpo import (
    LineSearchResult,
    conjugate_gradient,
    flatten,
    hessian_vector_product,
    line_search,
    unflatten,
)

CHUNK_ELEMENTS = 16 * 1024 * 1024  # floats (64 MB) in a chunk's widest activation


@dataclass(frozen=True)
class MetaStepSettings:
    inner_step_sizes: tuple[float, ...] = (0.1,)
    first_order: bool = False
    max_kl: float = 0.01
    cg_iters: int = 10
    cg_damping: float = 1e-5
    hvp: str = "exact"  # finite differences are wrong for ReLU MAML (metarl.trpo)
    hvp_epsilon: float = 1e-3
    hvp_subsample: float = 1.0
    line_search_ratio: float = 0.8
    line_search_steps: int = 15
    adapted_names: tuple[str, ...] | None = None  # parameters the inner loop adapts (None: all)
    fixed_names: tuple[str, ...] = ()  # parameters the meta-update leaves as they are


@dataclass
class MetaStepStats:
    surrogate_before: float
    surrogate_after: float
    kl: float
    line_search_steps: int
    accepted: bool
    cg_residual: float
    inner_step_norm: float = math.nan  # mean over tasks of |theta'_i - theta| (last inner step)
    seconds: dict[str, float] = field(default_factory=dict)


def _per_task_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


@dataclass
class MetaObjective:
    """Surrogate loss and mean KL as functions of the flat meta-parameters theta.

    Built `around` theta_old, which fixes pi_old on the validation states.
    """

    policy: nn.Module
    like: Params
    data: MetaBatch
    settings: MetaStepSettings
    old_mean: torch.Tensor
    old_log_std: torch.Tensor
    old_log_prob: torch.Tensor
    inner_step_norm: float = math.nan

    @classmethod
    def around(
        cls, policy: nn.Module, like: Params, data: MetaBatch, settings: MetaStepSettings
    ) -> MetaObjective:
        objective = cls(policy, like, data, settings, *(torch.empty(0),) * 3)
        with torch.no_grad():
            theta_old = flatten(objective.meta_like).requires_grad_()
            old_params = objective.adapted(theta_old, graph=False)
            mean, log_std = policy_outputs(policy, old_params, data.valid.step_observations)
            step_norm = inner_step_norm(like, old_params)
        log_prob = gaussian_log_prob(mean, log_std, data.valid.step_actions)
        return replace(
            objective,
            old_mean=mean,
            old_log_std=log_std,
            old_log_prob=log_prob,
            inner_step_norm=step_norm,
        )

    def restricted(self, tasks: torch.Tensor) -> MetaObjective:
        """The same objective on a subset of the tasks (for subsampled Hessian-vector products)."""
        per_task_std = self.old_log_std.dim() == 3  # [T, 1, act] when log_std is adapted
        return replace(
            self,
            data=self.data.select(tasks),
            old_mean=self.old_mean[tasks],
            old_log_std=self.old_log_std[tasks] if per_task_std else self.old_log_std,
            old_log_prob=self.old_log_prob[tasks],
        )

    def chunks(self, per_chunk: int | None = None) -> list[tuple[float, MetaObjective]]:
        """The objective as a weighted sum over chunks of `per_chunk` tasks, to bound memory.

        Mean losses over tasks are sums of (chunk size / tasks) x chunk means, and so
        are their gradients. A chunk's widest activation stays under CHUNK_ELEMENTS
        floats, so the graph of a huge meta-batch is never held at once. Chunks cost
        speed (HalfCheetahVel at the paper's scale, 40 tasks x 4000 steps: one KL
        gradient took 2.0 s whole and 5.0 s in four chunks of 10 tasks), so the limit
        is high: the paper's configs run in one chunk, bigger meta-batches are split.
        `per_chunk` None: from that limit (benchmarks/hvp_cost.py gives others).
        """
        num_tasks, steps = self.data.valid.step_mask.shape
        if per_chunk is None:
            widest = max(p.shape[-2] for n, p in self.like.items() if n.endswith("weight"))
            per_chunk = max(1, CHUNK_ELEMENTS // (steps * widest))
        if per_chunk >= num_tasks:
            return [(1.0, self)]
        return [
            (len(part) / num_tasks, self.restricted(part))
            for part in torch.arange(num_tasks).split(per_chunk)
        ]

    @property
    def meta_like(self) -> Params:
        """The meta-parameters (all but `settings.fixed_names`): theta is their flat vector."""
        fixed = self.settings.fixed_names
        return {name: p for name, p in self.like.items() if name not in fixed}

    def params(self, theta: torch.Tensor) -> Params:
        """The policy's parameters at theta: the meta-parameters from theta, the others as in like.

        The others are fresh leaves that require gradients, so the inner loop can still adapt
        them; the meta-gradient, taken with respect to theta only, does not see them.
        """
        with torch.enable_grad():  # theta's views must track gradients even under no_grad
            fixed = {
                name: p.detach().requires_grad_()
                for name, p in self.like.items()
                if name in self.settings.fixed_names
            }
            return {**self.like, **fixed, **unflatten(theta, self.meta_like)}

    def adapted(self, theta: torch.Tensor, graph: bool) -> Params:
        s = self.settings
        params = self.params(theta)
        return adapt(
            self.policy,
            params,
            self.data.train,
            s.inner_step_sizes,
            first_order=s.first_order or not graph,
            adapted_names=s.adapted_names,
        )

    def __call__(
        self, theta: torch.Tensor, graph: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(surrogate loss, mean KL) at theta; `graph=False` drops second-order terms."""
        valid = self.data.valid
        adapted = self.adapted(theta, graph)
        mean, log_std = policy_outputs(self.policy, adapted, valid.step_observations)
        ratio = torch.exp(gaussian_log_prob(mean, log_std, valid.step_actions) - self.old_log_prob)
        surrogate = -_per_task_mean(ratio * valid.step_advantages, valid.step_mask).mean()
        kl = gaussian_kl(self.old_mean, self.old_log_std, mean, log_std)
        return surrogate, _per_task_mean(kl, valid.step_mask).mean()

    def kl_gradient(self, theta: torch.Tensor) -> torch.Tensor:
        """grad KL at theta (a fresh leaf), without graph."""
        return self.kl_gradient_at(theta.detach().requires_grad_(), create_graph=False)

    def kl_gradient_at(self, theta: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
        """grad KL with respect to the leaf `theta`, keeping the graph for a second derivative."""
        _, kl = self(theta)
        return torch.autograd.grad(kl, theta, create_graph=create_graph)[0]


def meta_step(
    policy: nn.Module,
    params: Params,
    data: MetaBatch,
    settings: MetaStepSettings,
    rng: np.random.Generator,
) -> tuple[Params, MetaStepStats]:
    """One TRPO step on the MAML objective; returns the new meta-parameters and statistics.

    Every parameter but `settings.fixed_names` is a meta-parameter; the fixed ones are
    returned as they are (the inner loop still adapts those of `adapted_names`).
    """
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    unknown = sorted(set(settings.fixed_names) - set(params))
    if unknown:
        raise ValueError(f"cannot fix unknown parameters {unknown}; parameters: {sorted(params)}")
    like = {name: p.detach() for name, p in params.items()}

    # Steps 1-2: theta'_i(theta) with the graph, pi_old fixed on the validation states.
    objective = MetaObjective.around(policy, like, data, settings)
    theta_old = flatten(objective.meta_like)
    seconds["adaptation"] = time.perf_counter() - clock
    seconds["meta_gradient"] = 0.0

    # Step 3: the meta-gradient, through the inner update (task chunk by task chunk).
    chunks = objective.chunks()
    surrogate_before, gradient = 0.0, torch.zeros_like(theta_old)
    for weight, part in chunks:
        clock = time.perf_counter()
        theta = theta_old.clone().requires_grad_()
        surrogate, _ = part(theta)
        seconds["adaptation"] += time.perf_counter() - clock
        clock = time.perf_counter()
        gradient += weight * torch.autograd.grad(surrogate, theta)[0]
        surrogate_before += weight * float(surrogate.detach())
        seconds["meta_gradient"] += time.perf_counter() - clock

    # Step 4: x = H^-1 g by conjugate gradient on (a subsample of) the tasks.
    clock = time.perf_counter()
    hvp_objective = objective
    num_tasks = data.valid.num_tasks
    if settings.hvp_subsample < 1.0:
        count = max(1, round(settings.hvp_subsample * num_tasks))
        tasks = torch.from_numpy(np.sort(rng.choice(num_tasks, size=count, replace=False)))
        hvp_objective = objective.restricted(tasks)
    hvp = hessian_vector_product(hvp_objective, theta_old, settings)
    step_direction, h_step_direction, cg_residual = conjugate_gradient(
        hvp, gradient, settings.cg_iters
    )
    seconds["conjugate_gradient"] = time.perf_counter() - clock

    # Step 5: scale to the trust region and backtrack.
    clock = time.perf_counter()
    curvature = float(step_direction.dot(h_step_direction))

    def loss_and_kl(candidate: torch.Tensor) -> tuple[float, float]:
        loss, kl = 0.0, 0.0
        with torch.no_grad():
            for weight, part in chunks:
                part_loss, part_kl = part(candidate.clone().requires_grad_(), graph=False)
                loss, kl = loss + weight * float(part_loss), kl + weight * float(part_kl)
        return loss, kl

    if curvature > 0 and math.isfinite(curvature):
        full_step = -math.sqrt(2 * settings.max_kl / curvature) * step_direction
        result = line_search(
            loss_and_kl,
            theta_old,
            full_step,
            surrogate_before,
            settings.max_kl,
            settings.line_search_ratio,
            settings.line_search_steps,
        )
    else:  # a non-positive or non-finite curvature gives no trust-region step: keep theta
        result = LineSearchResult(theta_old, False, 0, surrogate_before, 0.0)
    seconds["line_search"] = time.perf_counter() - clock

    new_params = {name: p.detach().clone() for name, p in objective.params(result.theta).items()}
    stats = MetaStepStats(
        surrogate_before=surrogate_before,
        surrogate_after=result.loss,
        kl=result.kl,
        line_search_steps=result.steps,
        accepted=result.accepted,
        cg_residual=cg_residual,
        inner_step_norm=objective.inner_step_norm,
        seconds=seconds,
    )
    return new_params, stats
