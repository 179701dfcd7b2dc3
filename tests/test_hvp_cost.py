"""benchmarks/hvp_cost.py times what it says: products on the first n tasks are the
restricted objective's, and every chunking gives the unchunked product."""

from pathlib import Path

import pytest
import torch
from helpers import TINY_NAVIGATION, load_benchmark

from metarl.maml_trpo import MetaObjective
from metarl.policies import policy_params
from metarl.trpo import exact_hvp, flatten

ROOT = Path(__file__).parents[1]
cost = load_benchmark("hvp_cost")
steps = load_benchmark("hvp_subsample_steps")

TINY = TINY_NAVIGATION
NAVIGATION = str(ROOT / "configs" / "navigation.yaml")


def test_chunked_products_equal_the_whole_product_and_ratios_are_per_task():
    result = cost.measure(NAVIGATION, TINY, [1, 2, 4], [4, 3, 1], 1)
    assert [r["tasks"] for r in result["by_tasks"]] == [1, 2, 4]
    first = result["by_tasks"][0]
    assert first["product_vs_linear"] == 1.0 and first["build_vs_linear"] == 1.0
    for row in result["by_tasks"]:
        expected = row["product_s"] / (first["product_s"] * row["tasks"])
        assert row["product_vs_linear"] == pytest.approx(expected)
    assert [r["chunk"] for r in result["by_chunk"]] == [4, 3, 1]
    assert result["by_chunk"][0]["relative_difference"] == 0.0
    for row in result["by_chunk"][1:]:
        assert row["relative_difference"] < 1e-5  # the same sum in another order


def test_a_chunk_of_all_tasks_is_the_product_of_the_objective():
    config, training, batch, _ = steps.sampled_case(NAVIGATION, TINY, 0)
    params = {n: p.detach() for n, p in policy_params(training.policy).items()}
    objective = MetaObjective.around(training.policy, params, batch, training.settings)
    vector = torch.randn(flatten(objective.meta_like).numel())
    theta = flatten(objective.meta_like).clone().requires_grad_()
    expected = exact_hvp(objective.kl_gradient_at(theta), theta, vector)
    measured = cost.chunked_cost(objective, 4, vector, 1)["product"]
    assert torch.allclose(measured, expected, rtol=1e-5, atol=1e-7)
    halves = cost.chunked_cost(objective, 2, vector, 1)["product"]
    assert torch.allclose(halves, expected, rtol=1e-4, atol=1e-6)
