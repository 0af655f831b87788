"""The edge-energy readout model option: energy bookkeeping, forces, model-file round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from e3d_support import E0, acetylacetone, molecule_batch, tiny_model

from mlip.io.model_file import load_model, save_model


@pytest.fixture(scope="module")
def model():
    return tiny_model(edge_energy_readout=True, pair_repulsion=True)


def test_energy_is_e0_plus_edge_sum(model):
    numbers, positions = acetylacetone()
    batch = molecule_batch([(numbers, positions)], model.r_max)
    out = model(batch, compute_forces=False)
    e0 = sum(E0[int(z)] for z in numbers)
    eps = out["edge_energy"].detach()
    assert float(out["interaction_energy"][0].detach()) == pytest.approx(float(eps.sum()), abs=1e-10)
    assert float(out["energy"][0].detach()) == pytest.approx(e0 + float(eps.sum()), abs=1e-9)
    # node energy of i = E0_i + sum of the edges it receives
    node = torch.tensor([E0[int(z)] for z in numbers], dtype=torch.float64).index_add(0, batch["edge_index"][1], eps)
    np.testing.assert_allclose(out["node_energy"].detach().numpy(), node.numpy(), atol=1e-10)
    # one atom alone: no edges, no interaction energy (no per-atom shift in this mode)
    alone = model(molecule_batch([(numbers[:1], positions[:1])], model.r_max), compute_forces=False)
    assert float(alone["interaction_energy"][0].detach()) == 0.0


def test_forces_match_finite_differences(model):
    numbers, positions = acetylacetone()
    out = model(molecule_batch([(numbers, positions)], model.r_max))
    h = 1e-5
    for atom, axis in [(0, 0), (3, 2), (len(numbers) - 1, 1)]:
        e = []
        for sign in (1, -1):
            p = positions.copy()
            p[atom, axis] += sign * h
            e.append(float(model(molecule_batch([(numbers, p)], model.r_max), compute_forces=False)["energy"][0].detach()))
        assert float(out["forces"][atom, axis]) == pytest.approx(-(e[0] - e[1]) / (2 * h), abs=1e-6)


def test_model_file_round_trip(model, tmp_path):
    numbers, positions = acetylacetone()
    batch = molecule_batch([(numbers, positions)], model.r_max)
    save_model(model, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.edge_readout is not None and len(loaded.readouts) == 0
    a = model(batch, compute_forces=False)["edge_energy"].detach()
    b = loaded(batch, compute_forces=False)["edge_energy"].detach()
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
