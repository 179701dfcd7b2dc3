"""Hessian-vector products of MAML's KL for ReLU policies: why `hvp: exact` is the default.

For a ReLU policy the inner gradient jumps wherever a unit switches, so finite
differences of the KL gradient through the inner step measure those jumps. Double
backward gives the curvature that predicts the KL of TRPO's step. Numbers, not
runs: the KL along a conjugate-gradient step against the quadratic model.
"""

import math
from dataclasses import replace

import pytest
import torch

from metarl.config import TrainConfig, hvp_warning
from metarl.episodes import MetaBatch, Rollouts
from metarl.maml_trpo import MetaObjective, MetaStepSettings
from metarl.policies import GaussianMLPPolicy
from metarl.trpo import conjugate_gradient, flatten, hessian_vector_product

MAX_KL = 0.01


def relu_problem(activation: str, tasks=4, steps=400, seed=0):
    """A MAML objective with many ReLU activations (tasks x steps x 64 units), float64."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    policy = GaussianMLPPolicy(6, 3, hidden_sizes=(64, 64), activation=activation).double()

    def batch():
        shape = (tasks, 1, steps)
        return Rollouts(
            torch.randn(*shape, 6, generator=generator, dtype=torch.float64),
            torch.randn(*shape, 3, generator=generator, dtype=torch.float64),
            torch.zeros(shape, dtype=torch.float64),
            torch.ones(shape, dtype=torch.float64),
            torch.randn(shape, generator=generator, dtype=torch.float64),
            torch.arange(tasks),
        )

    like = {name: p.detach() for name, p in policy.named_parameters()}
    settings = MetaStepSettings(inner_step_sizes=(0.5,), max_kl=MAX_KL)
    data = MetaBatch([batch()], batch())
    return MetaObjective.around(policy, like, data, settings), flatten(like)


def kl_of_trust_region_step(objective, theta_old, hvp: str) -> float:
    """The real KL at TRPO's full step, whose quadratic model says max_kl."""
    settings = replace(objective.settings, hvp=hvp)
    theta = theta_old.clone().requires_grad_()
    surrogate, _ = objective(theta)
    gradient = torch.autograd.grad(surrogate, theta)[0]
    direction, h_direction, _ = conjugate_gradient(
        hessian_vector_product(objective, theta_old, settings), gradient, 10
    )
    step = -math.sqrt(2 * MAX_KL / float(direction.dot(h_direction))) * direction
    with torch.no_grad():
        _, kl = objective((theta_old + step).clone().requires_grad_(), graph=False)
    return float(kl)


def test_exact_hvp_predicts_the_kl_of_a_relu_maml_step():
    objective, theta_old = relu_problem("relu")
    kl = kl_of_trust_region_step(objective, theta_old, "exact")
    print(f"exact: KL at the full step {kl:.4f} for max_kl {MAX_KL}")
    assert 0.7 * MAX_KL < kl < 1.3 * MAX_KL


@pytest.mark.parametrize("method", ["finite_difference", "finite_difference_central"])
def test_finite_difference_hvp_is_wrong_for_relu_maml(method):
    """The failure that made `exact` the default: at the default epsilon the products are
    off by O(1) (how much depends on which switches a step happens to cross)."""
    objective, theta_old = relu_problem("relu")
    settings = replace(objective.settings, hvp=method, cg_damping=0.0, hvp_epsilon=1e-3)
    vector = torch.randn(
        theta_old.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    exact = hessian_vector_product(objective, theta_old, replace(settings, hvp="exact"))(vector)
    approx = hessian_vector_product(objective, theta_old, settings)(vector)
    relative = float((approx - exact).norm() / exact.norm())
    print(f"relu, {method}: finite differences off by {relative:.2f} of |Hv|")
    assert relative > 0.2


def test_finite_difference_and_exact_agree_for_tanh_at_this_size():
    """The same problem with tanh: both methods give the same product (and step)."""
    objective, theta_old = relu_problem("tanh")
    settings = replace(objective.settings, cg_damping=0.0, hvp_epsilon=1e-5)
    vector = torch.randn(
        theta_old.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    exact = hessian_vector_product(objective, theta_old, replace(settings, hvp="exact"))(vector)
    approx = hessian_vector_product(objective, theta_old, settings)(vector)
    assert float((approx - exact).norm() / exact.norm()) < 1e-3


def test_hvp_warning_names_finite_differences_through_a_relu_inner_step():
    def config(**keys):
        return TrainConfig(env="metarl/Navigation2D-v0", **keys)

    assert config().hvp == "exact" and hvp_warning(config()) is None
    warning = hvp_warning(config(hvp="finite_difference"))
    assert "activation: relu" in warning and "--set hvp=exact" in warning
    assert hvp_warning(config(hvp="finite_difference_central", algorithm="context")) is not None
    # no inner step (the baselines), or a smooth policy: finite differences are sound
    assert hvp_warning(config(hvp="finite_difference", algorithm="pretrain")) is None
    assert hvp_warning(config(hvp="finite_difference", algorithm="oracle")) is None
    assert hvp_warning(config(hvp="finite_difference", activation="tanh")) is None


def test_a_run_with_finite_differences_through_relu_says_so_when_it_starts(tmp_path):
    from metarl.progress import start_block
    from metarl.resuming import TrainingState

    config = TrainConfig(env="metarl/Navigation2D-v0", hvp="finite_difference")
    assert "warning:         hvp: finite_difference" in start_block(
        config, tmp_path, TrainingState()
    )
    assert "warning" not in start_block(
        TrainConfig(env="metarl/Navigation2D-v0"), tmp_path, TrainingState()
    )
