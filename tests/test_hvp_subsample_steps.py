"""benchmarks/hvp_subsample_steps.py compares what it claims: with the subsample set to
all tasks its 'subsampled' steps are the full-data step itself, and with fewer tasks
they are other steps, taken from the same meta-batch."""

from pathlib import Path

import pytest
from helpers import TINY_NAVIGATION, load_benchmark

ROOT = Path(__file__).parents[1]
steps = load_benchmark("hvp_subsample_steps")

TINY = TINY_NAVIGATION


def test_a_subsample_of_every_task_takes_exactly_the_full_step():
    case = steps.measure(
        str(ROOT / "configs" / "navigation.yaml"), TINY + ["hvp_subsample=1.0"], 2, 0
    )
    full, draws = case["rows"][0], case["rows"][1:]
    assert case["iteration"] == 0 and len(draws) == 2
    for row in draws:
        assert row["line_search_steps"] == full["line_search_steps"]
        assert row["surrogate_gain"] == full["surrogate_gain"]
        assert row["cosine_to_full"] == pytest.approx(1.0, abs=1e-6)
    assert case["subsampled_mean"]["gain_over_full"] == pytest.approx(1.0)


def test_a_half_subsample_steps_elsewhere_on_the_same_batch():
    case = steps.measure(
        str(ROOT / "configs" / "navigation.yaml"), TINY + ["hvp_subsample=0.5"], 2, 1
    )
    full, draws = case["rows"][0], case["rows"][1:]
    assert case["iteration"] == 1  # offset 1: the meta-batch of the next iteration
    assert full["hvp_subsample"] == 1.0 and {r["hvp_subsample"] for r in draws} == {0.5}
    assert all(r["cosine_to_full"] < 1 - 1e-4 for r in draws)
    summary = steps.per_case([case], case["case"])
    assert summary["batches"] == 1 and summary["iterations"] == [1]
    assert summary["gain_over_full"] == pytest.approx(case["subsampled_mean"]["gain_over_full"])
