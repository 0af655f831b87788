"""Parity with mace-torch 0.3.16: converted models reproduce the stored energies/forces/stress (float64)."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
import torch
from graphs import FIXTURES, VARIANTS, atoms_structures, make_batch

from mlip.data.batch import collate
from mlip.data.graph import configuration_to_graph
from mlip.data.io import read_configurations

E_TOL, F_TOL, S_TOL = 1e-8, 1e-8, 1e-9


def _check(model, variant, heads_per_structure):
    d = FIXTURES / variant
    atoms = ase.io.read(d / "structures.xyz", ":")
    ref = np.load(d / "outputs.npz")
    batch = make_batch(atoms_structures(atoms), model.r_max, heads=heads_per_structure)
    out = model(batch, compute_forces=True, compute_stress=True)
    ptr = batch["ptr"].numpy()
    for i, h in enumerate(heads_per_structure):
        head = model.heads[h]
        assert abs(out["energy"][i].item() - ref[f"{head}/energy"][i]) < E_TOL
        sl = slice(ptr[i], ptr[i + 1])
        np.testing.assert_allclose(out["forces"][sl].detach().numpy(), ref[f"{head}/forces/{i}"], rtol=0, atol=F_TOL)
        np.testing.assert_allclose(
            out["node_energy"][sl].detach().numpy(), ref[f"{head}/node_energy/{i}"], rtol=0, atol=E_TOL
        )
        np.testing.assert_allclose(out["stress"][i].detach().numpy(), ref[f"{head}/stress"][i], rtol=0, atol=S_TOL)
    # interaction energy = energy - sum E0
    e0 = torch.zeros_like(out["energy"]).index_add(
        0, batch["batch"], model.atomic_energies[batch["head"][batch["batch"]], model.element_index(batch["numbers"])]
    )
    torch.testing.assert_close(out["interaction_energy"], out["energy"] - e0, rtol=0, atol=1e-9)


@pytest.mark.parametrize("variant", VARIANTS)
def test_parity_every_head(converted, variant):
    model = converted(variant)
    n = len(ase.io.read(FIXTURES / variant / "structures.xyz", ":"))
    for h in range(len(model.heads)):
        _check(model, variant, [h] * n)


def test_parity_mixed_heads_in_one_batch(converted):
    model = converted("mh_nonlinear_two_heads")
    n = len(ase.io.read(FIXTURES / "mh_nonlinear_two_heads" / "structures.xyz", ":"))
    _check(model, "mh_nonlinear_two_heads", [i % 2 for i in range(n)])


def test_parity_through_data_pipeline(converted):
    """Same numbers with mlip.data's neighbour lists, graphs and collate (the contract's batch)."""
    variant = "mp_density_zbl_agnesi"
    model = converted(variant)
    configs = read_configurations(str(FIXTURES / variant / "structures.xyz"))[:3]
    batch = collate([configuration_to_graph(c, model.r_max, model.heads) for c in configs], torch.float64)
    out = model(batch, compute_forces=True, compute_stress=True)
    ref = np.load(FIXTURES / variant / "outputs.npz")
    np.testing.assert_allclose(out["energy"].detach().numpy(), ref["Default/energy"][:3], rtol=0, atol=E_TOL)
    np.testing.assert_allclose(out["stress"].detach().numpy(), ref["Default/stress"][:3], rtol=0, atol=S_TOL)
