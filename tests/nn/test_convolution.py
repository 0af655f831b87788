"""The channel-wise convolution's batched-matmul evaluation against e3nn's TensorProduct + scatter.

The reference is e3nn's own ``o3.TensorProduct`` (the module's ``tp``, built under a float64 default
dtype so that its constants are exact) applied per edge and summed with a brute-force Python loop over receivers.
"""

from __future__ import annotations

import pytest
import torch
from e3nn import o3

from mlip.nn.convolution import ChannelwiseConvolution, neighbour_layout, neighbour_slots


def _float64_conv(node: str, sh: str, target: str) -> ChannelwiseConvolution:
    """Built under a float64 default dtype: e3nn then computes its own constants in float64 (built in
    float32 and cast, its traced ``_tensor_constant``s keep float32 rounding, ~1e-7)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return ChannelwiseConvolution(node, sh, target)
    finally:
        torch.set_default_dtype(previous)


def _reference(conv: ChannelwiseConvolution, h, y, w, edge_index, gate=None) -> torch.Tensor:
    msg = conv.tp(h[edge_index[0]], y, w)
    if gate is not None:
        msg = msg * gate[:, None]
    out = torch.zeros(h.shape[0], msg.shape[1], dtype=msg.dtype)
    for e in range(msg.shape[0]):
        out[edge_index[1, e]] += msg[e]
    return out


def _inputs(conv: ChannelwiseConvolution, num_nodes: int, num_edges: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    h = torch.randn(num_nodes, conv.irreps_node.dim, generator=g, dtype=dtype)
    vec = torch.randn(num_edges, 3, generator=g, dtype=dtype)
    y = o3.spherical_harmonics(conv.irreps_sh, vec, normalize=True, normalization="component")
    w = torch.randn(num_edges, conv.weight_numel, generator=g, dtype=dtype)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=g)
    return h, vec, y, w, edge_index


@pytest.mark.parametrize(
    "node, sh, target",
    [
        ("8x0e", "0e + 1o + 2e + 3o", "8x0e + 8x1o + 8x2e + 8x3o"),  # first layer
        ("8x0e + 8x1o", "0e + 1o + 2e + 3o", "8x0e + 8x1o + 8x2e + 8x3o"),  # later layers
        ("4x0e + 4x1o + 4x2e", "0e + 1o + 2e", "4x0e + 4x1o + 4x1e + 4x2e"),  # odd paths (1o x 1o -> 1e)
    ],
)
def test_stacked_evaluation_equals_e3nn_tensor_product(node, sh, target):
    conv = _float64_conv(node, sh, target)
    assert conv._groups, "the batched evaluation must apply to uniform multiplicities"
    h, _, y, w, edge_index = _inputs(conv, num_nodes=7, num_edges=40)
    gate = torch.rand(40, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref = _reference(conv, h, y, w, edge_index)
    assert ref.abs().max() > 1e-2
    torch.testing.assert_close(conv(h, y, w, edge_index), ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(conv(h, y, w, edge_index, gate), _reference(conv, h, y, w, edge_index, gate),
                               rtol=0, atol=1e-12)


def test_gradients_equal_e3nn_tensor_product():
    conv = _float64_conv("6x0e + 6x1o", "0e + 1o + 2e + 3o", "6x0e + 6x1o + 6x2e + 6x3o")
    h, vec, _, w, edge_index = _inputs(conv, num_nodes=5, num_edges=30)
    grads = []
    for evaluate in (conv, lambda *a: _reference(conv, *a)):
        hh, vv, ww = (t.clone().requires_grad_(True) for t in (h, vec, w))
        y = o3.spherical_harmonics(conv.irreps_sh, vv, normalize=True, normalization="component")
        out = evaluate(hh, y, ww, edge_index)
        grads.append(torch.autograd.grad((out * torch.cos(out.detach())).sum(), [hh, vv, ww]))
    for ours, ref in zip(*grads):
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-11)


def test_coupling_constants_stay_exact_through_float32():
    conv = ChannelwiseConvolution("4x0e + 4x1o", "0e + 1o + 2e", "4x0e + 4x1o + 4x2e")
    exact = conv.coupling_1.clone()
    round_trip = conv.to(torch.float32).to(torch.float64)
    assert round_trip.coupling_1.dtype == torch.float64
    assert torch.equal(round_trip.coupling_1, exact)


def test_non_uniform_multiplicities_fall_back_to_e3nn():
    conv = _float64_conv("8x0e + 4x1o", "0e + 1o", "8x0e + 4x1o")
    assert not conv._groups
    h, _, y, w, edge_index = _inputs(conv, num_nodes=4, num_edges=12)
    torch.testing.assert_close(conv(h, y, w, edge_index), _reference(conv, h, y, w, edge_index), rtol=0, atol=1e-12)


def _sorted_edges(num_nodes: int, degrees: list[int], seed: int = 3) -> torch.Tensor:
    """Edges sorted by receiver, receiver ``n`` with ``degrees[n]`` random senders."""
    g = torch.Generator().manual_seed(seed)
    receiver = torch.repeat_interleave(torch.arange(len(degrees)), torch.tensor(degrees))
    return torch.stack([torch.randint(0, num_nodes, receiver.shape, generator=g), receiver])


@pytest.mark.parametrize("degrees", [[5, 5, 5, 5, 5, 5], [3, 7, 0, 6, 5, 4]], ids=["uniform", "varying"])
def test_neighbour_slots_give_the_scatter_sums_and_their_derivatives(degrees):
    """The slot evaluation (``dense``) against the scatter one: values, gradients, second derivatives."""
    conv = _float64_conv("6x0e + 6x1o", "0e + 1o + 2e + 3o", "6x0e + 6x1o + 6x2e + 6x3o")
    edge_index = _sorted_edges(6, degrees)
    h, vec, _, w, _ = _inputs(conv, num_nodes=6, num_edges=edge_index.shape[1])
    gate = torch.rand(edge_index.shape[1], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    layout = neighbour_layout(edge_index[0], edge_index[1], 6, 6)
    assert layout is not None and (layout.slots is None) == (len(set(degrees)) == 1)
    results = []
    for dense in ((), (1, 3)):
        conv.dense = dense
        hh, vv, ww = (t.clone().requires_grad_(True) for t in (h, vec, w))
        y = o3.spherical_harmonics(conv.irreps_sh, vv, normalize=True, normalization="component")
        out = conv(hh, y, ww, edge_index, gate)
        first = torch.autograd.grad((out * torch.cos(out)).sum(), [hh, vv, ww], create_graph=True)
        second = torch.autograd.grad(sum((g * g).sum() for g in first), [hh, vv, ww])
        results.append((out, *first, *second))
    assert results[0][0].abs().max() > 1e-2
    for dense, scatter in zip(*results):
        torch.testing.assert_close(dense, scatter, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(results[0][0], _reference(conv, h, o3.spherical_harmonics(
        conv.irreps_sh, vec, normalize=True, normalization="component"), w, edge_index, gate), rtol=0, atol=1e-12)


def test_neighbour_layout_refuses_unsorted_and_sparse_edges():
    edge_index = _sorted_edges(4, [2, 3, 1, 2])
    assert neighbour_layout(edge_index[0], edge_index[1].flip(0), 4, 4) is None  # not sorted by receiver
    sparse = _sorted_edges(8, [9, 1, 1, 1, 1, 1, 1, 1])  # 72 slots for 16 edges
    assert neighbour_layout(sparse[0], sparse[1], 8, 8) is None
    layout = neighbour_layout(edge_index[0], edge_index[1], 4, 4)
    assert layout.width == 3 and layout.slots.shape == (12,)
    assert (layout.sender == 4).sum() == 12 - 8  # empty slots point at the zero row


@pytest.mark.parametrize("blocks", [True, False], ids=["blocked", "unblocked"])
@pytest.mark.parametrize("name", ["residual", "nonlinear_two_heads"])
def test_model_with_slots_equals_scatter_for_all_atoms_and_for_local_atoms(name, blocks, monkeypatch):
    """A whole model with and without neighbour slots: energy and forces, and the domain-decomposition path
    (``local_energies``: the 9 atoms owned, every other edge's sender a ghost copy of its atom), where slots
    made for the 9 atoms must not be used."""
    from ase.build import molecule
    from graphs import atoms_structures, make_batch
    from small_models import small_model

    model = small_model(name)
    batch = make_batch(atoms_structures([molecule("CH3CH2OH")]), r_max=3.0)
    order = torch.argsort(batch["edge_index"][1], stable=True)
    batch["edge_index"], batch["unit_shifts"] = batch["edge_index"][:, order], batch["unit_shifts"][order]
    if not blocks:  # one convolution call over all edges, the slots handed in as a compiled call gets them
        monkeypatch.setattr(model, "blocking", None)
        batch.update(neighbour_slots(batch["edge_index"], 9))  # the ghost batch below must not use them
    ghosts = dict(batch)
    for key in ("positions", "numbers", "batch"):
        ghosts[key] = torch.cat([batch[key], batch[key]])
    sender, receiver = batch["edge_index"]
    ghosts["edge_index"] = torch.stack([sender + 9 * (torch.arange(sender.shape[0]) % 2), receiver])
    results = []
    for dense in ((1,), ()):
        monkeypatch.setattr(ChannelwiseConvolution, "dense", dense)
        out = model(batch, compute_forces=True)
        local = model.local_energies(ghosts, 9, exchange=lambda h: torch.cat([h, h]))
        results.append((out["energy"], out["forces"], out["node_energy"], local))
    assert neighbour_layout(sender, receiver, 9, 9) is not None
    for with_slots, scatter in zip(*results):
        torch.testing.assert_close(with_slots, scatter, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(results[0][3], results[0][2], rtol=1e-12, atol=1e-12)  # ghosts change nothing
