"""mlip.nn.grad_output on an analytic energy (no model): forces, virials, stress and their masks."""

from __future__ import annotations

import torch

from mlip.nn.grad_output import energy_gradients, strain, zero_displacement


def _harmonic(positions, cell, node_graph, pbc, k=0.7):
    """E_b = k/2 sum_{i in b} |r_i|^2: F = -k r, dE/deps = k sum_i r_i r_i^T, so stress = k sum r r^T / V."""
    displacement = zero_displacement(int(node_graph.max()) + 1, positions)
    leaf = positions.clone().requires_grad_(True)
    r, _ = strain(leaf, cell, node_graph, displacement)
    energy = torch.zeros(cell.shape[0], dtype=r.dtype).index_add(0, node_graph, 0.5 * k * (r * r).sum(-1))
    return leaf, energy_gradients(energy, leaf, displacement, cell, pbc)


def test_forces_virials_stress_of_a_harmonic_energy():
    torch.manual_seed(0)
    positions = torch.randn(5, 3, dtype=torch.float64)
    node_graph = torch.tensor([0, 0, 1, 1, 1])
    cell = torch.stack([torch.diag(torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64)), torch.zeros(3, 3, dtype=torch.float64)])
    pbc = torch.tensor([[True, True, True], [False, False, False]])
    k = 0.7
    _, out = _harmonic(positions, cell, node_graph, pbc, k)
    assert torch.allclose(out["forces"], -k * positions)
    rr0 = k * positions[:2].T @ positions[:2]
    rr1 = k * positions[2:].T @ positions[2:]
    assert torch.allclose(out["virials"][0], -rr0) and torch.allclose(out["virials"][1], -rr1)
    assert torch.allclose(out["stress"][0], rr0 / 24.0)  # V = 2*3*4
    assert torch.equal(out["stress"][1], torch.zeros(3, 3, dtype=torch.float64))  # no cell, no pbc: zero


def test_periodic_flag_masks_stress_and_unused_inputs_give_zeros():
    positions = torch.randn(2, 3, dtype=torch.float64)
    cell = torch.eye(3, dtype=torch.float64).reshape(1, 3, 3) * 5
    _, out = _harmonic(positions, cell, torch.tensor([0, 0]), torch.tensor([[False, False, False]]))
    assert torch.equal(out["stress"], torch.zeros(1, 3, 3, dtype=torch.float64))
    assert not torch.equal(out["virials"], torch.zeros(1, 3, 3, dtype=torch.float64))
    leaf = positions.clone().requires_grad_(True)
    constant = (leaf.detach().sum() * torch.ones(1, dtype=torch.float64)).requires_grad_(True)
    grads = energy_gradients(constant, leaf, None)
    assert set(grads) == {"forces"} and torch.equal(grads["forces"], torch.zeros(2, 3, dtype=torch.float64))
