"""Measurements of one MAML-TRPO update for benchmarks/meta_iteration.py.

The update's arithmetic floor (matmul FLOPs counted with torch's flop formulas over
this process's matmul rate), the error of subsampled Hessian-vector products, and the
ablations that justify the update's choices (one-sided finite differences, all tasks
batched).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from metarl.experiment import iteration_tasks
from metarl.maml_trpo import MetaObjective, hessian_vector_product, meta_step
from metarl.meta_iteration import Training
from metarl.policies import policy_params
from metarl.trpo import conjugate_gradient, flatten


def sampled_objective(training: Training, iteration: int = 0):
    """A meta-batch of `iteration` and the MetaObjective around the current theta."""
    config, policy = training.config, training.policy
    batch = training.sampler.sample(policy_params(policy), iteration_tasks(config, iteration), 0)
    batch = batch.to(training.device)
    like = {n: p.detach().to(training.device) for n, p in policy_params(policy).items()}
    return batch, like, MetaObjective.around(policy, like, batch, training.settings)


class MatmulFlops(TorchDispatchMode):
    """Counts the FLOPs of the ops torch's flop counter knows (matrix products, convolutions)
    in everything run inside it, backward passes included.

    FlopCounterMode itself also tracks modules with hooks that fail on functional_call's
    outputs under no_grad, so this uses its formulas (torch.utils.flop_counter) directly.
    """

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def matmul_rate(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """float32 FLOP/s of a size x size matrix product on `device` (this process's threads)."""
    a, b = (torch.randn(size, size, device=device) for _ in range(2))
    a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


MATMUL_OPS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::addbmm")


def update_profile(run_update) -> dict:
    """Where one update's CPU time goes, by torch.profiler: the matrix products' share.

    Self times of every aten op (the profiler's own overhead included, so only shares are
    reported); `matmul_self_s` is the time inside the matrix-product kernels.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        run_update()
    ops = [e for e in profiler.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in ops) / 1e6
    matmul = sum(e.self_cpu_time_total for e in ops if e.key in MATMUL_OPS) / 1e6
    top = sorted(ops, key=lambda e: e.self_cpu_time_total, reverse=True)[:6]
    return {
        "profile_ops_self_s": total,
        "profile_matmul_self_s": matmul,
        "profile_matmul_share": matmul / total,
        "profile_top_ops": [
            {"op": e.key, "self_s": e.self_cpu_time_total / 1e6, "calls": e.count} for e in top
        ],
    }


def update_floor(training: Training, update_s: float) -> dict:
    """The update's matmul FLOPs, the machine's matmul rate, and update time / floor.

    The gap is split in two with a profile of the same update (same batch): the matrix
    products' own time against the floor (how fast the products run: their shapes), and
    the update's time against the products' (everything else: elementwise work, autograd).
    """
    batch, like, _ = sampled_objective(training, iteration=1)

    def run_update():
        meta_step(training.policy, like, batch, training.settings, np.random.default_rng(0))

    with MatmulFlops() as counter:
        run_update()
    flops = counter.total
    rate = matmul_rate(training.device)
    floor_s = flops / rate
    result = {
        "update_gflop": flops / 1e9,
        "matmul_gflop_per_s": rate / 1e9,
        "update_floor_s": floor_s,
        "update_over_floor": update_s / floor_s,
    }
    if training.device.type == "cpu":  # the profile reads CPU kernels' times
        profile = update_profile(run_update)
        share = profile["profile_matmul_share"]
        result.update(profile)
        result["products_gflop_per_s"] = flops / 1e9 / (share * update_s)
        result["products_over_floor"] = share * update_s / floor_s
        result["update_over_products"] = 1 / share
    return result


def hvp_subsample_error(training: Training, fraction: float, directions: int = 5) -> dict:
    """Relative error of the subsampled HVP and cosine of the CG step against full data."""
    _, like, full = sampled_objective(training)
    settings, theta_old = training.settings, flatten(like)
    num_tasks = full.data.valid.num_tasks
    rng = np.random.default_rng(0)
    generator = torch.Generator().manual_seed(0)
    errors, tasks = [], None
    for _ in range(directions):
        count = round(fraction * num_tasks)
        tasks = torch.from_numpy(np.sort(rng.choice(num_tasks, count, replace=False)))
        vector = torch.randn(theta_old.shape, generator=generator).to(theta_old.device)
        exact = hessian_vector_product(full, theta_old, settings)(vector)
        sub = hessian_vector_product(full.restricted(tasks), theta_old, settings)(vector)
        errors.append(float((sub - exact).norm() / exact.norm()))
    theta = theta_old.clone().requires_grad_()
    gradient = torch.autograd.grad(full(theta)[0], theta)[0]
    steps = [
        conjugate_gradient(hessian_vector_product(o, theta_old, settings), gradient, 10)[0]
        for o in (full, full.restricted(tasks))
    ]
    cosine = float(steps[0].dot(steps[1]) / (steps[0].norm() * steps[1].norm()))
    return {"hvp_relative_error": statistics.mean(errors), "step_cosine": cosine}


def best_time(function, repeats: int = 5) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def ablations(training: Training) -> dict:
    _, like, objective = sampled_objective(training)
    settings, theta_old = training.settings, flatten(like)
    vector = torch.randn(theta_old.shape, generator=torch.Generator().manual_seed(0))
    result = {}
    for method in ("finite_difference", "finite_difference_central", "exact"):
        hvp_settings = settings.__class__(**{**settings.__dict__, "hvp": method})

        def products(s=hvp_settings):  # what CG needs: building the product, then 10 products
            hvp = hessian_vector_product(objective, theta_old, s)
            for _ in range(settings.cg_iters):
                hvp(vector)

        result[f"hvp_{method}_10_products_s"] = best_time(products)

    def gradient_of(objective_for: MetaObjective) -> torch.Tensor:
        theta = theta_old.clone().requires_grad_()
        return torch.autograd.grad(objective_for(theta)[0], theta)[0]

    singles = [
        objective.restricted(torch.tensor([i])) for i in range(objective.data.valid.num_tasks)
    ]
    result["meta_gradient_batched_s"] = best_time(lambda: gradient_of(objective))
    result["meta_gradient_task_loop_s"] = best_time(
        lambda: sum(gradient_of(single) for single in singles)
    )
    return result
