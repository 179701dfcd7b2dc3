"""How accurate are the KL's Hessian-vector products, and what do they do to TRPO's step?

For each case (a config at its random init, or a checkpoint's policy) this samples one
small meta-batch and measures, against the exact product (double backward):
  - the relative error and cosine of finite-difference products for a random vector
    (one-sided and central, several epsilons);
  - the real KL at TRPO's full step (the step whose quadratic model says max_kl),
    with each method's curvature;
  - the time of 10 conjugate-gradient iterations with each method.

    python benchmarks/hvp_check.py \
        --case configs/navigation.yaml \
        --case configs/halfcheetah_dir.yaml \
        --case configs/halfcheetah_dir.yaml@CHECKPOINT \
        --tasks 5 --rollouts 20

Writes benchmarks/results/hvp_check.json and prints a table. README, "The
Hessian-vector products", explains the result: through MAML's inner step a ReLU
policy's KL gradient jumps, which finite differences measure.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import torch

from metarl.checkpoints import load_checkpoint
from metarl.config import TrainConfig
from metarl.config_validation import load_config
from metarl.experiment import iteration_tasks
from metarl.maml_trpo import MetaObjective
from metarl.meta_iteration import Training
from metarl.policies import policy_params
from metarl.trpo import conjugate_gradient, flatten, hessian_vector_product

METHODS = [
    ("finite_difference", 1e-2),
    ("finite_difference", 1e-3),
    ("finite_difference", 1e-4),
    ("finite_difference_central", 1e-3),
]


def sampled_objective(case: str, tasks: int, rollouts: int, activation: str | None):
    """The MetaObjective around the case's policy on one sampled meta-batch."""
    config_path, _, checkpoint = case.partition("@")
    overrides = [
        f"meta_batch_size={tasks}",
        f"rollouts_per_task={rollouts}",
        "sampler=local",
        f"num_envs={tasks * rollouts}",
        "torch_threads=1",
        "hvp_subsample=1.0",
        "device=cpu",
    ]
    if activation is not None:
        overrides.append(f"activation={activation}")
    config = load_config(TrainConfig, config_path, overrides)
    training = Training(config)
    try:
        if checkpoint:
            training.commit(load_checkpoint(checkpoint)["policy"])
        params = policy_params(training.policy)
        batch = training.sampler.sample(params, iteration_tasks(config, 7), 7)
    finally:
        training.close()
    like = {name: p.detach() for name, p in params.items()}
    return MetaObjective.around(training.policy, like, batch, training.settings), config


def full_step_kl(objective: MetaObjective, theta_old: torch.Tensor, hvp, max_kl: float):
    """(real KL at the full TRPO step, seconds of 10 CG iterations); nan KL if x'Hx <= 0."""
    theta = theta_old.clone().requires_grad_()
    surrogate, _ = objective(theta)
    gradient = torch.autograd.grad(surrogate, theta)[0]
    clock = time.perf_counter()
    direction, h_direction, _ = conjugate_gradient(hvp, gradient, 10)
    seconds = time.perf_counter() - clock
    curvature = float(direction.dot(h_direction))
    if not curvature > 0:
        return math.nan, seconds
    step = -math.sqrt(2 * max_kl / curvature) * direction
    with torch.no_grad():
        _, kl = objective((theta_old + step).clone().requires_grad_(), graph=False)
    return float(kl), seconds


def check(case: str, tasks: int, rollouts: int, activation: str | None) -> dict:
    objective, config = sampled_objective(case, tasks, rollouts, activation)
    theta_old = flatten(objective.meta_like)
    vector = torch.randn(theta_old.numel(), generator=torch.Generator().manual_seed(0))
    settings = objective.settings  # the steps use the config's damping, the products none

    def products(method: str, epsilon: float):
        damped = replace(settings, hvp=method, hvp_epsilon=epsilon)
        undamped = hessian_vector_product(objective, theta_old, replace(damped, cg_damping=0.0))
        return hessian_vector_product(objective, theta_old, damped), undamped(vector)

    exact_hvp, exact = products("exact", settings.hvp_epsilon)
    kl, seconds = full_step_kl(objective, theta_old, exact_hvp, settings.max_kl)
    rows = [
        {
            "method": "exact",
            "epsilon": None,
            "relative_error": 0.0,
            "cosine": 1.0,
            "full_step_kl": kl,
            "cg_seconds": seconds,
        }
    ]
    for method, epsilon in METHODS:
        hvp, product = products(method, epsilon)
        kl, seconds = full_step_kl(objective, theta_old, hvp, settings.max_kl)
        rows.append(
            {
                "method": method,
                "epsilon": epsilon,
                "relative_error": float((product - exact).norm() / exact.norm()),
                "cosine": float(product.dot(exact) / product.norm() / exact.norm()),
                "full_step_kl": kl,
                "cg_seconds": seconds,
            }
        )
    return {
        "case": case,
        "env": config.env,
        "activation": config.activation,
        "tasks": tasks,
        "rollouts_per_task": rollouts,
        "max_kl": settings.max_kl,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--case", action="append", required=True, help="CONFIG or CONFIG@CHECKPOINT (repeatable)"
    )
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--rollouts", type=int, default=20)
    parser.add_argument(
        "--tanh",
        action="store_true",
        help="also check each config with activation tanh (random init only)",
    )
    parser.add_argument("--out", default="benchmarks/results/hvp_check.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    for case in args.case:
        activations = [None] + (["tanh"] if args.tanh and "@" not in case else [])
        for activation in activations:
            results.append(check(case, args.tasks, args.rollouts, activation))
    Path(args.out).write_text(json.dumps({"cases": results}, indent=2) + "\n")
    print(
        f"| case | activation | method | eps | rel. error | cosine | KL at full step "
        f"(max_kl {results[0]['max_kl']}) | 10 CG its (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for result in results:
        for row in result["rows"]:
            eps = "–" if row["epsilon"] is None else f"{row['epsilon']:g}"
            print(
                f"| {result['case']} | {result['activation']} | {row['method']} | {eps} | "
                f"{row['relative_error']:.2f} | {row['cosine']:.3f} | "
                f"{row['full_step_kl']:.4f} | {row['cg_seconds']:.2f} |"
            )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
