"""E3D edge energies: completeness, gate semantics, invariances, diatomics, cutoff (float64)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from e3d_support import acetylacetone, molecule_batch, random_rotation, tiny_model

from mlip.analysis.attribution import edge_energies, gauss_legendre_01

VARIANTS = {
    "residual": {},
    "density_zbl": {"interaction": "density_residual", "interaction_first": "density", "pair_repulsion": True},
    "nonlinear": {"interaction": "nonlinear", "interaction_first": "nonlinear", "apply_cutoff": False},
    "readout_zbl": {"edge_energy_readout": True, "pair_repulsion": True},
}


@functools.lru_cache(maxsize=None)
def variant(name: str) -> torch.nn.Module:
    """Models are built once per module (building dominates the run time)."""
    return tiny_model(**VARIANTS[name])


def _energy(model, batch, gate=None):
    b = dict(batch)
    if gate is not None:
        b["edge_gate"] = gate
    return model(b, compute_forces=False)["energy"].detach()


def test_gauss_legendre_on_unit_interval():
    t, w = gauss_legendre_01(5)
    assert w.sum() == pytest.approx(1.0, abs=1e-15)
    for k in range(10):  # exact for degree <= 2K - 1
        assert (w * t**k).sum() == pytest.approx(1.0 / (k + 1), abs=1e-14)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_attribution_completeness(name):
    model = variant(name)
    numbers, positions = acetylacetone()
    batch = molecule_batch([(numbers, positions), (numbers[:6], positions[:6] * 1.05)], model.r_max)
    res = edge_energies(model, batch, "attribution", nodes=16)
    e1 = _energy(model, batch).numpy()
    e0 = _energy(model, batch, torch.zeros(batch["edge_index"].shape[1], dtype=torch.float64)).numpy()
    sums = np.bincount(res.edge_graph, weights=res.eps, minlength=2)
    np.testing.assert_allclose(sums, e1 - e0, rtol=0, atol=1e-8)
    assert res.completeness_error.max() < 1e-8
    assert np.abs(res.eps).max() > 1e-3  # not trivially zero


def test_readout_completeness_and_no_self_energy():
    model = variant("readout_zbl")
    numbers, positions = acetylacetone()
    batch = molecule_batch([(numbers, positions)], model.r_max)
    res = edge_energies(model, batch, "readout")
    out = model(batch, compute_forces=False)
    e0_sum = sum({1: -13.568, 6: -1026.854, 8: -2037.797}[int(z)] for z in numbers)
    assert res.eps.sum() == pytest.approx(float(out["energy"][0].detach()) - e0_sum, abs=1e-8)
    assert res.self_energy[0] == 0.0
    # attribution on the same model: edge by edge it differs (gating also changes node features), but
    # it is complete too and E(0) = sum E0 because every edge term of a readout model is gated
    att = edge_energies(model, batch, "attribution", nodes=16)
    assert att.self_energy[0] == pytest.approx(0.0, abs=1e-10)
    assert att.eps.sum() == pytest.approx(res.eps.sum(), abs=1e-8)


def test_readout_requires_edge_model():
    model = variant("residual")
    batch = molecule_batch([acetylacetone()], model.r_max)
    with pytest.raises(ValueError, match="edge_energy_readout"):
        edge_energies(model, batch, "readout")


@pytest.mark.parametrize("name", ["density_zbl", "nonlinear", "readout_zbl"])
def test_zero_gate_removes_the_edge_in_every_layer(name):
    """lambda = 0 on a pair of edges equals the model on the graph without them (messages, densities, ZBL)."""
    model = variant(name)
    numbers, positions = acetylacetone()
    batch = molecule_batch([(numbers, positions)], model.r_max)
    s, r = batch["edge_index"]
    drop = ((s == 0) & (r == 1)) | ((s == 1) & (r == 0))
    assert int(drop.sum()) == 2
    gate = (~drop).to(torch.float64)
    reduced = dict(batch, edge_index=batch["edge_index"][:, ~drop], unit_shifts=batch["unit_shifts"][~drop])
    assert _energy(model, batch, gate)[0] == pytest.approx(float(_energy(model, reduced)[0]), abs=1e-10)
    assert abs(float(_energy(model, batch)[0] - _energy(model, reduced)[0])) > 1e-4


@pytest.mark.parametrize("name", ["residual", "readout_zbl"])
def test_diatomic_bond_energy(name):
    model = variant(name)
    numbers, positions = np.array([6, 8]), np.array([[0.0, 0.0, 0.0], [0.3, -0.2, 1.1]])
    batch = molecule_batch([(numbers, positions)], model.r_max)
    e_coh = float(_energy(model, batch)[0]) - (-1026.854 - 2037.797)
    # the model's own isolated atoms (graphs without edges) give E(0)
    atoms = molecule_batch([(numbers[:1], positions[:1]), (numbers[1:], positions[1:])], model.r_max)
    self_energy = float(_energy(model, atoms).sum()) - (-1026.854 - 2037.797)
    for method in (["readout"] if name == "readout_zbl" else []) + ["attribution"]:
        res = edge_energies(model, batch, method, nodes=8)
        assert res.eps.shape == (2,)
        d = res.eps.sum()
        assert res.self_energy[0] == pytest.approx(self_energy, abs=1e-10)
        assert d == pytest.approx(e_coh - self_energy, abs=1e-8)
        if name == "readout_zbl":
            assert self_energy == pytest.approx(0.0, abs=1e-12)
            assert d == pytest.approx(e_coh, abs=1e-8)  # D = E_coh for a diatomic


@pytest.mark.parametrize("name", ["residual", "readout_zbl"])
def test_edges_beyond_cutoff_contribute_zero(name):
    model = variant(name)
    numbers, positions = acetylacetone()
    positions = positions.copy()
    positions[-1] += np.array([0.0, 0.0, 2.5])  # pull one atom away so some pairs cross r_max
    inside = molecule_batch([(numbers, positions)], model.r_max)
    wide = molecule_batch([(numbers, positions)], model.r_max, extra_cutoff=model.r_max + 3.0)
    s, r = wide["edge_index"]
    dist = torch.linalg.norm(wide["positions"][r] - wide["positions"][s], dim=-1).numpy()
    assert (dist >= model.r_max).sum() > 0
    for method in (["readout"] if name == "readout_zbl" else []) + ["attribution"]:
        res_w = edge_energies(model, wide, method, nodes=8)
        res_i = edge_energies(model, inside, method, nodes=8)
        assert np.abs(res_w.eps[dist >= model.r_max]).max() == 0.0
        assert res_w.energy[0] == pytest.approx(res_i.energy[0], abs=1e-10)
        assert res_w.eps.sum() == pytest.approx(res_i.eps.sum(), abs=1e-10)


@pytest.mark.parametrize("method", ["readout", "attribution"])
def test_rotation_and_permutation_invariance(method):
    model = variant("readout_zbl" if method == "readout" else "density_zbl")
    numbers, positions = acetylacetone()
    base = molecule_batch([(numbers, positions)], model.r_max)
    res = edge_energies(model, base, method, nodes=8)
    eps = {(int(a), int(b)): e for a, b, e in zip(*base["edge_index"].numpy(), res.eps)}
    perm = np.random.default_rng(3).permutation(len(numbers))  # new atom k is old atom perm[k]
    rot = random_rotation(2)
    moved = molecule_batch([(numbers[perm], positions[perm] @ rot.T + np.array([0.4, -1.0, 2.0]))], model.r_max)
    res2 = edge_energies(model, moved, method, nodes=8)
    assert res2.eps.shape == res.eps.shape
    for a, b, e in zip(*moved["edge_index"].numpy(), res2.eps):
        assert e == pytest.approx(eps[(int(perm[a]), int(perm[b]))], abs=1e-10)
