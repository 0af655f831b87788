"""Symmetry of the predicted uncertainties; LLPR model files; the calculator and committee outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from u_support import crystal, molecule, random_rotation, tiny_model

from mlip.calculator import MLIPCalculator
from mlip.errors import ModelFileError
from mlip.io.model_file import load_model
from mlip.uncertainty import fit_llpr, load_llpr, save_llpr_model
from mlip.uncertainty.committee import Committee
from mlip.uncertainty.llpr import iter_batches

_LLPR: dict = {}


def fitted(heads=("Default",)):
    """A tiny model and an LLPR fitted and calibrated on random labelled clusters (cached)."""
    if heads not in _LLPR:
        rng = np.random.default_rng(10)
        model = tiny_model(seed=3, heads=heads)
        train = [molecule(rng, 5, head=heads[k % len(heads)], labels=True) for k in range(16)]
        valid = [molecule(rng, 5, head=heads[k % len(heads)], labels=True) for k in range(8)]
        _LLPR[heads] = (model, fit_llpr(model, train, valid, batch_size=8))
    return _LLPR[heads]


def atoms_of(config):
    return Atoms(numbers=config.numbers, positions=config.positions, cell=config.cell, pbc=config.pbc)


def test_uncertainties_invariant_under_rotation_translation_and_permutation():
    model, llpr = fitted()
    calc = MLIPCalculator(model, uncertainty=llpr, skin=0.0)
    atoms = atoms_of(molecule(np.random.default_rng(11), 6))
    ref_e = calc.get_property("energy_uncertainty", atoms)
    ref_f = calc.get_property("forces_uncertainty", atoms).copy()
    assert ref_e > 0 and np.all(ref_f > 0)
    rng = np.random.default_rng(12)
    moved = atoms.copy()
    moved.positions = atoms.positions @ random_rotation(rng).T + rng.normal(size=3) * 3
    assert calc.get_property("energy_uncertainty", moved) == pytest.approx(ref_e, rel=1e-9)
    np.testing.assert_allclose(calc.get_property("forces_uncertainty", moved), ref_f, rtol=1e-9)
    perm = rng.permutation(len(atoms))
    permuted = atoms[perm]
    assert calc.get_property("energy_uncertainty", permuted) == pytest.approx(ref_e, rel=1e-9)
    np.testing.assert_allclose(calc.get_property("forces_uncertainty", permuted), ref_f[perm], rtol=1e-9)


def test_stress_uncertainty_rotates_with_the_cell():
    """A 90 degree turn about z swaps x and y components; any rotation keeps the summed stress variance."""
    model, llpr = fitted()
    calc = MLIPCalculator(model, uncertainty=llpr, skin=0.0)
    atoms = atoms_of(crystal(np.random.default_rng(13)))
    ref = calc.get_property("stress_uncertainty", atoms).copy()  # xx yy zz yz xz xy
    ref_total = np.sum(ref**2) + np.sum(ref[3:] ** 2)  # off-diagonals count twice in the 3x3 tensor
    assert np.all(ref > 0)
    turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    turned = atoms.copy()
    turned.set_cell(atoms.cell.array @ turn.T, scale_atoms=False)
    turned.positions = atoms.positions @ turn.T
    got = calc.get_property("stress_uncertainty", turned)
    np.testing.assert_allclose(got, ref[[1, 0, 2, 4, 3, 5]], rtol=1e-8)
    rot = random_rotation(np.random.default_rng(14))
    rotated = atoms.copy()
    rotated.set_cell(atoms.cell.array @ rot.T, scale_atoms=False)
    rotated.positions = atoms.positions @ rot.T
    got = calc.get_property("stress_uncertainty", rotated)
    assert np.sum(got**2) + np.sum(got[3:] ** 2) == pytest.approx(ref_total, rel=1e-8)


def test_llpr_model_file_round_trip_and_safety(tmp_path):
    model, llpr = fitted(("a", "b"))
    path = tmp_path / "model_llpr.pt"
    save_llpr_model(model, llpr, path, metadata={"note": "x"})
    back = load_llpr(path)
    for name in ("a", "b"):
        h, g = llpr.heads[name], back.heads[name]
        assert torch.equal(h.gram, g.gram) and torch.equal(h.weights, g.weights)
        assert (h.alpha2, h.reg, h.n_train, h.n_valid, h.calibrated_on) == (g.alpha2, g.reg, g.n_train, g.n_valid,
                                                                             g.calibrated_on)
    payload = torch.load(path, weights_only=True)  # plain containers only: no class is unpickled
    assert set(payload) == {"mlip_model", "state_dict"}
    reloaded = load_model(path)  # an ordinary model file
    atoms = atoms_of(molecule(np.random.default_rng(15), 5, head="b"))
    a = MLIPCalculator(model, head="b", uncertainty=llpr).get_property("forces_uncertainty", atoms)
    b = MLIPCalculator(path, head="b", uncertainty=back).get_property("forces_uncertainty", atoms.copy())
    np.testing.assert_array_equal(a, b)
    from mlip.io.model_file import save_model

    save_model(reloaded, tmp_path / "plain.pt")
    with pytest.raises(ModelFileError, match="no LLPR"):
        load_llpr(tmp_path / "plain.pt")


def test_llpr_refuses_a_model_with_other_readout_weights():
    _, llpr = fitted()
    other = tiny_model(seed=4)
    with pytest.raises(ModelFileError, match="readout weights differ"):
        llpr.potential(other)


def test_committee_mean_and_spread(tmp_path):
    from mlip.io.model_file import save_model

    paths = []
    for seed in range(3):
        paths.append(tmp_path / f"m{seed}.pt")
        save_model(tiny_model(seed=seed), paths[-1])
    atoms = atoms_of(crystal(np.random.default_rng(16)))
    singles = [MLIPCalculator(p) for p in paths]
    energies = np.array([c.get_potential_energy(atoms.copy()) for c in singles])
    forces = np.array([c.get_forces(atoms.copy()) for c in singles])
    stress = np.array([c.get_stress(atoms.copy()) for c in singles])
    calc = MLIPCalculator(paths[0], uncertainty=Committee(paths))
    assert calc.get_potential_energy(atoms) == pytest.approx(energies.mean(), rel=1e-12)
    assert calc.get_property("energy_uncertainty", atoms) == pytest.approx(energies.std(ddof=1), rel=1e-10)
    np.testing.assert_allclose(calc.get_forces(atoms), forces.mean(axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(calc.get_property("forces_uncertainty", atoms),
                               np.sqrt(forces.var(axis=0, ddof=1).sum(axis=1)), rtol=1e-10)
    np.testing.assert_allclose(calc.get_property("stress_uncertainty", atoms), stress.std(axis=0, ddof=1),
                               rtol=1e-8, atol=1e-14)


def test_energy_difference_uncertainty_along_a_path():
    """sigma(E_i - E_j) from the potential equals alpha sqrt(df^T (H0 + lambda I)^-1 df) of the features."""
    from mlip.uncertainty import difference_sigma
    from mlip.uncertainty.frames import energy_difference_uncertainty
    from mlip.uncertainty.predict import evaluate_with_features

    model, llpr = fitted()
    start = molecule(np.random.default_rng(17), 5)
    path = []
    for t in np.linspace(0, 1, 4):
        c = molecule(np.random.default_rng(17), 5)
        c.positions = start.positions + t * np.array([0.3, 0.0, 0.0]) * np.arange(5)[:, None] / 5
        path.append(c)
    energies, sigma = energy_difference_uncertainty(llpr.potential(model), path)
    feats = evaluate_with_features(model, next(iter_batches(model, path, 8)), compute_forces=False)["features"]
    h = llpr.heads["Default"]
    np.testing.assert_allclose(sigma, difference_sigma(feats, h.gram, h.alpha2, h.reg).numpy(), rtol=1e-8, atol=1e-12)
    assert np.all(np.diag(sigma) == 0) and sigma[0, 3] > sigma[0, 1] > 0
    assert energies.shape == (4,)


def test_float32_calculator_agrees_with_float64():
    """The float32 path (features and VJPs in float32, H0 factor cast) stays within float32 rounding."""
    model, llpr = fitted()
    atoms = atoms_of(molecule(np.random.default_rng(18), 6))
    c64 = MLIPCalculator(model, uncertainty=llpr)
    c32 = MLIPCalculator(model, dtype="float32", uncertainty=llpr)
    assert c32.get_property("energy_uncertainty", atoms) == pytest.approx(
        c64.get_property("energy_uncertainty", atoms.copy()), rel=1e-4)
    np.testing.assert_allclose(c32.get_property("forces_uncertainty", atoms),
                               c64.get_property("forces_uncertainty", atoms.copy()), rtol=1e-3)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (never run so far: no GPU here)")
def test_llpr_and_committee_on_cuda_match_cpu():
    model, llpr = fitted()
    atoms = atoms_of(crystal(np.random.default_rng(19)))
    cpu = MLIPCalculator(model, uncertainty=llpr)
    gpu = MLIPCalculator(model, device="cuda", uncertainty=llpr)
    for key in ("energy_uncertainty", "forces_uncertainty", "stress_uncertainty"):
        np.testing.assert_allclose(gpu.get_property(key, atoms), cpu.get_property(key, atoms.copy()), rtol=1e-8)
    members = [model, tiny_model(seed=8)]
    cpu = MLIPCalculator(model, uncertainty=Committee(members))
    gpu = MLIPCalculator(model, device="cuda", uncertainty=Committee(members))
    np.testing.assert_allclose(gpu.get_property("forces_uncertainty", atoms),
                               cpu.get_property("forces_uncertainty", atoms.copy()), rtol=1e-8)


def test_head_without_training_frames_is_refused_when_used():
    rng = np.random.default_rng(21)
    model = tiny_model(seed=3, heads=("a", "b"))
    train = [molecule(rng, 5, head="a", labels=True) for _ in range(6)]
    llpr = fit_llpr(model, train, train[:3], batch_size=8)
    assert set(llpr.heads) == {"a"}
    atoms = atoms_of(molecule(rng, 5))
    assert MLIPCalculator(model, head="a", uncertainty=llpr).get_property("energy_uncertainty", atoms) > 0
    with pytest.raises(ModelFileError, match="no LLPR for head"):
        MLIPCalculator(model, head="b", uncertainty=llpr).get_property("energy_uncertainty", atoms.copy())
