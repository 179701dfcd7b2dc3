"""`meta_log_std`: with "fixed" the TRPO step leaves log_std alone; "learned" is the old algorithm.

Fixed: the meta-parameters are all but log_std, the inner loop still adapts log_std per
task, and the step is the trust-region step of the problem restricted to the others
(checked against a step solved by hand on a tiny problem). Learned: the numbers are the
ones recorded before the key existed (metarl 98ef927, main), to the last bit.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from helpers import small_navigation_config
from tiny_problems import tiny_problem

from metarl.checkpoints import load_checkpoint, save_checkpoint
from metarl.comparisons import TRAINED_BY, baseline_config
from metarl.config_validation import ConfigError
from metarl.maml_trpo import MetaObjective, MetaStepSettings, meta_step
from metarl.meta_iteration import Training
from metarl.resuming import CHECKPOINT, resume_point
from metarl.trainer import train
from metarl.trpo import conjugate_gradient, flatten

FIXED = MetaStepSettings(inner_step_sizes=(0.5,), max_kl=0.05, fixed_names=("log_std",))


def test_fixed_log_std_is_unchanged_by_the_meta_step_and_still_adapted_per_task():
    policy, data = tiny_problem(num_tasks=3, inner_steps=1)
    params = {name: p.detach().clone() for name, p in policy.named_parameters()}
    new, stats = meta_step(policy, params, data, FIXED, np.random.default_rng(0))
    assert torch.equal(new["log_std"], params["log_std"])
    assert stats.accepted and 0 < stats.kl <= FIXED.max_kl
    others = flatten({n: new[n] - p for n, p in params.items() if n != "log_std"})
    assert others.norm() > 1e-3
    # the inner loop adapts log_std: each task's validation policy has its own
    objective = MetaObjective.around(policy, params, data, FIXED)
    assert objective.old_log_std.shape[0] == 3
    assert not torch.equal(objective.old_log_std[0], objective.old_log_std[1])


def test_fixed_step_is_the_trust_region_step_of_the_other_parameters_solved_by_hand():
    """g and the damped H restricted to all but log_std; x = H^-1 g; TRPO scaling, line search."""
    policy, data = tiny_problem(num_tasks=3, inner_steps=1)
    params = {name: p.detach().clone() for name, p in policy.named_parameters()}
    settings = dataclasses.replace(FIXED, hvp="exact", cg_iters=200, cg_damping=0.01)
    new, stats = meta_step(policy, params, data, settings, np.random.default_rng(0))

    # the whole problem (log_std a meta-parameter), differentiated by hand
    whole = MetaObjective.around(
        policy, params, data, dataclasses.replace(settings, fixed_names=())
    )
    theta_old = flatten(params)
    free = torch.cat(
        [torch.full((p.numel(),), name != "log_std") for name, p in params.items()]
    ).nonzero()[:, 0]
    theta = theta_old.clone().requires_grad_()
    gradient = torch.autograd.grad(whole(theta)[0], theta)[0][free]
    hessian = torch.autograd.functional.hessian(lambda t: whole(t)[1], theta_old)[free][:, free]
    hessian += settings.cg_damping * torch.eye(len(free), dtype=hessian.dtype)
    x, h_x, _ = conjugate_gradient(lambda v: hessian @ v, gradient, settings.cg_iters)
    assert torch.linalg.norm(x - torch.linalg.solve(hessian, gradient)) < 1e-3 * x.norm()
    full_step = -math.sqrt(2 * settings.max_kl / float(x @ h_x)) * x
    expected = theta_old[free] + settings.line_search_ratio ** (stats.line_search_steps - 1) * (
        full_step
    )

    assert stats.accepted
    got = flatten({n: p for n, p in new.items() if n != "log_std"})
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_fixed_names_must_be_parameters():
    policy, data = tiny_problem()
    params = dict(policy.named_parameters())
    settings = dataclasses.replace(FIXED, fixed_names=("log_sigma",))
    with pytest.raises(ValueError, match="log_sigma"):
        meta_step(policy, params, data, settings, np.random.default_rng(0))


def test_config_key_fixes_log_std_in_the_trpo_step_of_every_algorithm():
    assert small_navigation_config().meta_log_std == "learned"
    with pytest.raises(ConfigError, match="meta_log_std"):
        small_navigation_config(meta_log_std="frozen")
    for algorithm in ("maml", "pretrain", "oracle", "context"):
        config = small_navigation_config(algorithm=algorithm, meta_log_std="fixed")
        training = Training(config)
        try:
            assert training.settings.fixed_names == ("log_std",)
            new, _ = training.run_iteration(0)
            assert torch.equal(new["log_std"], torch.zeros_like(new["log_std"]))
        finally:
            training.close()


def test_baselines_of_a_fixed_run_are_trained_with_a_learned_log_std():
    """The cause is MAML's; eval's baselines stay the paper's (and old ones are reused)."""
    config = small_navigation_config(meta_log_std="fixed")
    for method, algorithm in TRAINED_BY.items():
        wanted = baseline_config(config, method)
        assert (wanted.algorithm, wanted.meta_log_std) == (algorithm, "learned")
        assert wanted == small_navigation_config(algorithm=algorithm)


def test_learned_log_std_trains_bitwise_as_before_the_key():
    """Values recorded with metarl 98ef927 (main, before meta_log_std) on the same problems
    (whose default Hessian-vector products were then finite differences)."""
    policy, data = tiny_problem(num_tasks=3, inner_steps=1)
    params = dict(policy.named_parameters())
    settings = MetaStepSettings(inner_step_sizes=(0.5,), max_kl=0.05, hvp="finite_difference")
    new, stats = meta_step(policy, params, data, settings, np.random.default_rng(0))
    flat = flatten(new)
    assert float(flat.sum()) == -1.0522978297971826
    assert float((flat**2).sum()) == 8.977182875758897
    assert (stats.surrogate_after, stats.kl) == (-0.05426186605830823, 0.04655571677358034)

    training = Training(small_navigation_config(hvp="finite_difference"))
    rows = []
    try:
        for iteration in range(2):
            new, row = training.run_iteration(iteration)
            training.commit(new)
            rows.append((row["return_post_1"], row["kl"], row["surrogate_after"]))
    finally:
        training.close()
    assert rows == [
        (-9.693579745292663, 0.006963984575122595, -0.0221642404794693),
        (-9.256261998414994, 0.00940443854779005, -0.011412323452532291),
    ]
    assert float(flatten(new).double().sum()) == -5.022502556443214


def test_a_checkpoint_without_the_key_resumes_with_learned_log_std(tmp_path):
    """Runs started before meta_log_std existed continue as they were trained."""
    run_dir = train(small_navigation_config(iterations=1), tmp_path / "run", show_progress=False)
    checkpoint = load_checkpoint(run_dir / CHECKPOINT)
    del checkpoint["config"]["meta_log_std"]
    save_checkpoint(run_dir / CHECKPOINT, checkpoint)
    config_yaml = run_dir / "config.yaml"
    lines = config_yaml.read_text().splitlines(keepends=True)
    config_yaml.write_text("".join(line for line in lines if "meta_log_std" not in line))

    point = resume_point(run_dir, {"iterations": 2})
    assert point.config.meta_log_std == "learned"
    assert "meta_log_std: learned" in config_yaml.read_text()
