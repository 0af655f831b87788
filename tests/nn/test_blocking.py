"""Eager inference a block of atoms at a time (mlip.nn.blocking) gives the numbers of one block."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from ase.build import bulk

from mlip.nn.blocking import BlockPlan, Blocking, blocked_edge_sum, blocked_rows, receiver_blocks
from mlip.nn.contraction import SymmetricContraction

from graphs import atoms_structures, make_batch
from small_models import VARIANTS, small_model


def _sorted_by_receiver(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    order = np.lexsort((batch["edge_index"][0].numpy(), batch["edge_index"][1].numpy()))
    order = torch.as_tensor(order)
    return {**batch, "edge_index": batch["edge_index"][:, order], "unit_shifts": batch["unit_shifts"][order]}


def _structures(numbers: list[int]):
    """A rattled periodic cell and an open cluster with an isolated atom in the middle of the numbering."""
    rng = np.random.default_rng(3)
    crystal = bulk("Si", "diamond", a=3.9, cubic=True) * (2, 1, 1)
    crystal.numbers = rng.choice(numbers, size=len(crystal))
    crystal.positions += rng.normal(0, 0.1, crystal.positions.shape)
    cluster = crystal.copy()
    cluster.pbc = False
    cluster.positions[5] += [30.0, 0.0, 0.0]  # no neighbours: a receiver without edges
    return atoms_structures([crystal, cluster])


@pytest.mark.parametrize("recompute_bytes", [0, 2**40])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_blocked_model_equals_one_block(variant, recompute_bytes):
    model = copy.deepcopy(small_model(variant))
    batch = _sorted_by_receiver(make_batch(_structures(model.atomic_numbers), model.r_max))
    if "heads" in VARIANTS[variant]:
        batch["head"] = torch.tensor([1, 0])
    model.blocking = None
    whole = model(batch, compute_forces=True, compute_stress=True)
    model.blocking = Blocking(elements=40, recompute_bytes=recompute_bytes)  # blocks of a few edges and atoms
    blocked = model(batch, compute_forces=True, compute_stress=True)
    width = getattr(model.interactions[0], "edge_width", None)  # the non-linear block sums all edges at once
    plan = BlockPlan(40, bool(recompute_bytes == 0))
    assert model._block_plan(False, batch["edge_index"].shape[1], len(batch["positions"])) == plan
    assert width is None or batch["edge_index"].shape[1] > 10 * plan.rows(width)
    assert len(batch["positions"]) > 4 * plan.rows(model.products[0].contraction.node_elements)
    for key in ("energy", "node_energy", "forces", "stress"):
        torch.testing.assert_close(blocked[key], whole[key], rtol=0, atol=1e-12)


def test_blocked_cueq_model_equals_one_block():
    pytest.importorskip("cuequivariance_torch")
    from mlip.nn.backends.convert import convert_backend

    model = convert_backend(copy.deepcopy(small_model("density_zbl_agnesi")), "cueq")
    batch = _sorted_by_receiver(make_batch(_structures(model.atomic_numbers), model.r_max))
    model.blocking = None
    whole = model(batch, compute_forces=True, compute_stress=True)
    for recompute_bytes in (0, 2**40):
        model.blocking = Blocking(elements=40, recompute_bytes=recompute_bytes)
        blocked = model(batch, compute_forces=True, compute_stress=True)
        for key in ("energy", "forces", "stress"):
            torch.testing.assert_close(blocked[key], whole[key], rtol=0, atol=1e-12)


def test_blocked_float32_model_equals_one_block():
    model = copy.deepcopy(small_model("residual", dtype=torch.float32))
    batch = _sorted_by_receiver(make_batch(_structures(model.atomic_numbers), model.r_max, dtype=torch.float32))
    model.blocking = None
    whole = model(batch, compute_forces=True, compute_stress=True)
    model.blocking = Blocking(elements=40, recompute_bytes=0)
    blocked = model(batch, compute_forces=True, compute_stress=True)
    # matmuls over fewer rows may sum in another order, and gradients are summed block by block: rounding only
    torch.testing.assert_close(blocked["energy"], whole["energy"], rtol=1e-7, atol=0)
    for key in ("forces", "stress"):
        torch.testing.assert_close(blocked[key], whole[key], rtol=0, atol=1e-5)


def test_training_never_blocks():
    model = copy.deepcopy(small_model("residual"))
    assert model._block_plan(True, 1000, 100) is None
    assert model._block_plan(False, 1000, 100) == BlockPlan(Blocking().elements, False)


def test_recompute_only_above_the_byte_budget():
    policy = Blocking(elements=2**21, recompute_bytes=2**30)
    si512 = 14336 * (1024 + 2560) + 512 * (49152 + 16384)  # 64-channel mp64 model: edges + products
    assert not policy.plan(si512, torch.float64).recompute  # 0.7 GB: kept
    assert policy.plan(8 * si512, torch.float32).recompute  # 4096 atoms: 2.7 GB, recomputed
    with torch.no_grad():
        assert not policy.plan(8 * si512, torch.float32).recompute  # no backward, nothing to keep
    assert BlockPlan(2**21, False).rows(2560) == 819 and BlockPlan(2**21, False).rows(0) == 2**21


def test_receiver_blocks_cover_every_node_once():
    receiver = torch.tensor([0, 0, 0, 1, 3, 3, 3, 3, 3, 4, 6])  # nodes 2 and 5 have no edges
    blocks = receiver_blocks(receiver, num_nodes=7, max_edges=3)
    assert blocks is not None
    assert blocks[0][0] == 0 and blocks[-1][1] == 7
    for (n0, n1, e0, e1), nxt in zip(blocks, blocks[1:] + [None]):
        assert n1 > n0
        assert bool((receiver[e0:e1] >= n0).all()) and bool((receiver[e0:e1] < n1).all())
        if nxt is not None:
            assert nxt[0] == n1 and nxt[2] == e1
        assert e1 - e0 <= 3 or n1 - n0 == 1  # only a single node may exceed the budget (node 3: 5 edges)
    assert sum(e1 - e0 for _, _, e0, e1 in blocks) == len(receiver)
    assert receiver_blocks(receiver.flip(0), 7, 3) is None  # unsorted: no blocking
    assert receiver_blocks(receiver, 7, 0) is None and receiver_blocks(receiver, 7, 100) is None


@pytest.mark.parametrize("recompute", [True, False])
def test_blocked_edge_sum_and_its_gradients(recompute):
    torch.manual_seed(0)
    receiver = torch.sort(torch.randint(0, 9, (40,))).values
    sender = torch.randint(0, 9, (40,))
    h = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(40, 4, dtype=torch.float64, requires_grad=True)

    def block_sum(h, w, sender, receiver, n):
        return torch.zeros(n, 4, dtype=h.dtype).index_add(0, receiver, torch.sin(h[sender]) * w)

    whole = block_sum(h, w, sender, receiver, 9)
    blocked = blocked_edge_sum(block_sum, receiver, 9, 7, (w, sender), (h,), recompute=recompute)
    torch.testing.assert_close(blocked, whole, rtol=0, atol=0)
    g_whole = torch.autograd.grad((whole**2).sum(), (h, w))
    g_blocked = torch.autograd.grad((blocked**2).sum(), (h, w))
    for a, b in zip(g_blocked, g_whole):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)


def test_blocked_rows_with_none_inputs():
    x = torch.randn(10, 3, dtype=torch.float64, requires_grad=True)
    out = blocked_rows(lambda x, y: x * 2 if y is None else x, 3, (x, None), recompute=True)
    torch.testing.assert_close(out, x * 2)
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, torch.full_like(x, 2.0))


def test_grouped_horner_equals_masked_horner():
    torch.manual_seed(1)
    sc = SymmetricContraction("3x0e + 3x1o + 3x2e", "3x0e + 3x1o", 3, num_elements=4, strategy="horner").double()
    a = torch.randn(11, 3, 9, dtype=torch.float64)
    element = torch.tensor([0, 2, 2, 3, 0, 0, 2, 3, 3, 2, 0])  # element 1 absent
    grouped = sc._horner(a, element, "horner", grouped=True)
    masked = sc._horner(a, element, "horner", grouped=False)
    torch.testing.assert_close(grouped, masked, rtol=0, atol=1e-13)
