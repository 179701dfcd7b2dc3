"""TRPO's pieces: conjugate gradient, Hessian-vector products of the KL, and the line search.

Parameters travel as flat vectors here (`flatten` / `unflatten`). The KL's
Hessian-vector product is taken exactly by double backward (the default: about
twice the cost of one KL gradient per product), or by finite differences of the
KL gradient (the MAML paper's choice, one gradient per product).

Finite differences are exact in the limit only for a smooth KL. Through MAML's
inner step theta' = theta - alpha grad L(theta), a ReLU policy makes theta'(theta)
discontinuous: grad L jumps wherever a unit switches on or off for some sample,
and a step of any size eps crosses about eps-proportionally many switches, so the
quotient (grad KL(theta + eps v) - grad KL(theta)) / eps keeps an O(1) error that
grows as eps shrinks. Double backward differentiates the smooth pieces, which is
what predicts the KL of TRPO's step (README, "The Hessian-vector products").

At theta_old the KL(pi_old || pi_theta) is at its minimum, so its gradient is
exactly zero there and the one-sided difference
    H v ~ (grad KL(theta + eps v) - grad KL(theta)) / eps = grad KL(theta + eps v) / eps
costs one gradient; the central difference costs two and is second-order accurate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from metarl.policies import Params

Vector = torch.Tensor
HVP_METHODS = ("finite_difference", "finite_difference_central", "exact")


def flatten(tensors: Params | list[torch.Tensor]) -> Vector:
    values = tensors.values() if isinstance(tensors, dict) else tensors
    return torch.cat([t.reshape(-1) for t in values])


def unflatten(vector: Vector, like: Params) -> Params:
    out, offset = {}, 0
    for name, tensor in like.items():
        out[name] = vector[offset : offset + tensor.numel()].view_as(tensor)
        offset += tensor.numel()
    assert offset == vector.numel()
    return out


def conjugate_gradient(
    hvp: Callable[[Vector], Vector], b: Vector, iterations: int, tolerance: float = 1e-10
) -> tuple[Vector, Vector, float]:
    """Approximately solve H x = b for symmetric positive-definite H.

    Returns (x, H x, |b - H x|). H x is b minus the final residual, which CG tracks
    anyway: the trust-region scaling x'Hx then costs no extra product.
    """
    x = torch.zeros_like(b)
    residual = b.clone()
    direction = b.clone()
    residual_sq = residual.dot(residual)
    for _ in range(iterations):
        if residual_sq <= tolerance:
            break
        h_direction = hvp(direction)
        alpha = residual_sq / direction.dot(h_direction)
        x = x + alpha * direction
        residual = residual - alpha * h_direction
        new_residual_sq = residual.dot(residual)
        direction = residual + (new_residual_sq / residual_sq) * direction
        residual_sq = new_residual_sq
    return x, b - residual, float(residual_sq.sqrt())


def finite_difference_hvp(
    kl_gradient: Callable[[Vector], Vector],
    theta: Vector,
    vector: Vector,
    epsilon: float,
    central: bool = False,
) -> Vector:
    """H v from KL gradients at theta +- eps' v, with eps' = epsilon / |v| (a step of norm epsilon).

    kl_gradient(theta) returns grad KL at theta; its value at theta_old is zero, which
    the one-sided form relies on.
    """
    scale = epsilon / (vector.norm() + 1e-12)
    forward = kl_gradient(theta + scale * vector)
    if not central:
        return forward / scale
    backward = kl_gradient(theta - scale * vector)
    return (forward - backward) / (2 * scale)


def exact_hvp(kl_gradient: Vector, theta: Vector, vector: Vector) -> Vector:
    """H v by differentiating (grad KL . v) again; `kl_gradient` must carry its graph to theta."""
    return torch.autograd.grad(kl_gradient.dot(vector), theta, retain_graph=True)[0]


@dataclass
class LineSearchResult:
    theta: Vector
    accepted: bool
    steps: int  # backtracking steps tried (1 = the full step)
    loss: float
    kl: float


def line_search(
    loss_and_kl: Callable[[Vector], tuple[float, float]],
    theta: Vector,
    full_step: Vector,
    loss_before: float,
    max_kl: float,
    ratio: float = 0.8,
    max_steps: int = 15,
) -> LineSearchResult:
    """Accept the first theta + ratio^k * full_step that lowers the loss with KL <= max_kl.

    Non-finite loss or KL is never accepted. If no step qualifies, theta is returned unchanged.
    """
    for k in range(max_steps):
        candidate = theta + (ratio**k) * full_step
        loss, kl = loss_and_kl(candidate)
        if math.isfinite(loss) and math.isfinite(kl) and loss < loss_before and kl <= max_kl:
            return LineSearchResult(candidate, True, k + 1, loss, kl)
    return LineSearchResult(theta, False, max_steps, loss_before, 0.0)


def hessian_vector_product(
    objective, theta_old: Vector, settings
) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (H + damping I) v for the KL Hessian H at theta_old, by the configured method.

    `objective` (a `metarl.maml_trpo.MetaObjective`) gives the KL gradient chunk by chunk;
    `settings` (its `MetaStepSettings`) the method, epsilon and damping.
    """
    if settings.hvp not in HVP_METHODS:
        raise ValueError(f"hvp must be one of {HVP_METHODS}, got {settings.hvp!r}")
    chunks = objective.chunks()
    if settings.hvp == "exact":
        theta = theta_old.clone().requires_grad_()
        kl_gradients = [(w, part.kl_gradient_at(theta)) for w, part in chunks]

        def product(vector: torch.Tensor) -> torch.Tensor:
            return sum(w * exact_hvp(g, theta, vector) for w, g in kl_gradients)
    else:
        central = settings.hvp == "finite_difference_central"

        def kl_gradient(theta: torch.Tensor) -> torch.Tensor:
            return sum(w * part.kl_gradient(theta) for w, part in chunks)

        def product(vector: torch.Tensor) -> torch.Tensor:
            return finite_difference_hvp(
                kl_gradient, theta_old, vector, settings.hvp_epsilon, central
            )

    return lambda vector: product(vector) + settings.cg_damping * vector
