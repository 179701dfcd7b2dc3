"""The speed benchmark's update measures count what they claim: matrix-product FLOPs by
hand, and the profile's share of time in matrix products."""

import importlib.util
from pathlib import Path

import torch

spec = importlib.util.spec_from_file_location(
    "update_measures", Path(__file__).resolve().parents[1] / "benchmarks" / "update_measures.py"
)
update_measures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(update_measures)


def test_matmul_flops_are_2mnk_for_forward_and_both_backward_products():
    a = torch.randn(30, 40, requires_grad=True)
    b = torch.randn(40, 50, requires_grad=True)
    stack = torch.randn(3, 30, 40)
    with update_measures.MatmulFlops() as counter:
        (a @ b).sum().backward()  # forward 2mnk; backward dA = G B^T and dB = A^T G, 2mnk each
    assert counter.total == 3 * 2 * 30 * 40 * 50
    with update_measures.MatmulFlops() as counter:
        torch.bmm(stack, b.detach().expand(3, 40, 50))
        torch.relu(stack)  # elementwise work counts nothing
    assert counter.total == 3 * 2 * 30 * 40 * 50


def test_profile_puts_matrix_products_and_elementwise_work_apart():
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    products = update_measures.update_profile(lambda: [a @ b for _ in range(20)])
    assert products["profile_matmul_share"] > 0.9
    assert products["profile_top_ops"][0]["op"] == "aten::mm"
    assert products["profile_top_ops"][0]["calls"] == 20
    elementwise = update_measures.update_profile(lambda: [torch.exp(a) + b for _ in range(20)])
    assert elementwise["profile_matmul_share"] == 0.0
