"""scripts/roofline.py (issue 24): the op counter on a linear layer, and the per-block table of a small model."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import roofline  # noqa: E402  (scripts are not a package)


def test_linear_layer_flops_and_bytes_forward_and_backward():
    """``Linear(64, 32)`` on ``[100, 64]``: 2*100*64*32 FLOPs forward, twice that backward (input and weight
    grads), all given to the module; the sum outside it goes to ``other``."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 32, bias=False, dtype=torch.float64)
    x = torch.randn(100, 64, dtype=torch.float64, requires_grad=True)

    def call() -> None:
        layer(x).sum().backward()

    costs, wall = roofline.profile_call(call, blocks=[("linear", "Linear")])
    forward = 2 * 100 * 64 * 32
    assert costs["linear", "fwd"].flops == forward
    assert costs["linear", "bwd"].flops == 2 * forward
    # mm reads x and the weight (its transpose is a view: no bytes) and writes [100, 32]
    assert costs["linear", "fwd"].bytes == 8 * (100 * 64 + 32 * 64 + 100 * 32)
    assert costs["other", "fwd"].flops == 100 * 32  # the sum: one FLOP per input element
    assert wall > 0 and all(cost.seconds >= 0 for cost in costs.values())


def test_elementwise_and_reduction_rules():
    a, b = torch.ones(10, 5), torch.ones(10, 5)
    aten = torch.ops.aten
    assert roofline.op_flops(aten.mul.Tensor, (a, b), {}, a * b) == 50
    assert roofline.op_bytes(aten.mul.Tensor, (a, b), {}, a * b) == 3 * 50 * 4
    assert roofline.op_flops(aten.sum.dim_IntList, (a, [1]), {}, a.sum(1)) == 50
    assert roofline.op_flops(aten.clone.default, (a,), {}, a.clone()) == 0
    index = torch.tensor([0, 1, 1])
    out = torch.zeros(2, 5).index_add(0, index, b[:3])
    assert roofline.op_flops(aten.index_add.default, (torch.zeros(2, 5), 0, index, b[:3]), {}, out) == 15
    assert roofline.op_bytes(aten.view.default, (a, [50]), {}, a.view(50)) == 0


def test_mp64_block_table_on_a_small_cell():
    """Every listed block runs forward and backward with positive FLOPs, and the table lists them."""
    args = roofline.parse_args(["--atoms-cells", "1", "--repeats", "1", "--plain-repeats", "1",
                                "--peak-size", "64", "--copy-mib", "1"])
    m = roofline.measure("float32", args, bandwidth=roofline.copy_bandwidth(1))
    assert m.atoms == 8 and m.edges > 0
    for block, _ in roofline.MODEL_BLOCKS:
        assert m.costs[block, "fwd"].flops > 0 and m.costs[block, "bwd"].flops > 0, block
    assert m.costs[roofline.OTHER, "fwd"].ops > 0
    table = "\n".join(roofline.block_table(m))
    for block, _ in roofline.MODEL_BLOCKS:
        assert f"| {block} (fwd) |" in table and f"| {block} (bwd) |" in table
    assert "Total:" in table and "% of the float32 matmul peak" in table
