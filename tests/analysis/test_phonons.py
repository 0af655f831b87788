"""mlip.analysis.phonons: analytic-Hessian force constants against phonopy's finite displacements, band
structure, DOS, imaginary modes and the plot, on a 2x2x2 supercell of the 2-atom Si primitive cell with
the tiny random-weight float64 model of the integration tests.

The random model's Si diamond is dynamically unstable (imaginary modes everywhere); that does not
matter for comparing two routes to the same force constants.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

pytest.importorskip("phonopy")

from mlip.analysis.phonons import (  # noqa: E402
    IMAGINARY_TOLERANCE,
    band_structure,
    dos,
    force_constants_analytic,
    force_constants_displacement,
    imaginary_modes,
    plot_phonons,
)
from mlip.errors import ConfigError  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integrations"))
from integ_support import tiny_model  # noqa: E402

SUPERCELL = [2, 2, 2]
QPOINTS = [[0.0, 0.0, 0.0], [0.5, 0.0, 0.5], [0.5, 0.5, 0.5], [0.25, 0.0, 0.25], [0.375, 0.375, 0.75]]
"""Gamma, X, L (zone boundary), half-way to X, K (fractional, primitive fcc reciprocal lattice)."""


@pytest.fixture(scope="module")
def unitcell():
    return bulk("Si", a=5.43)


@pytest.fixture(scope="module")
def calc():
    from mlip.calculator import MLIPCalculator

    return MLIPCalculator(tiny_model(), dtype="float64")


@pytest.fixture(scope="module")
def analytic(calc, unitcell):
    return force_constants_analytic(calc, unitcell, SUPERCELL)


@pytest.fixture(scope="module")
def band(analytic, unitcell):
    return band_structure(analytic[0], unitcell, npoints=41)


@pytest.fixture(scope="module")
def total_dos(analytic):
    return dos(analytic[0], mesh=(8, 8, 8))


def _frequencies(phonon, qpoints) -> np.ndarray:
    phonon.run_qpoints(qpoints)
    return np.sort(np.asarray(phonon.qpoints.frequencies), axis=1)


def test_analytic_matches_finite_displacement(calc, unitcell, analytic):
    phonon, _ = analytic
    displaced = force_constants_displacement(calc, unitcell, SUPERCELL, distance=0.01)
    assert phonon.force_constants.shape == displaced.force_constants.shape == (16, 16, 3, 3)
    f_analytic = _frequencies(phonon, QPOINTS)
    f_displaced = _frequencies(displaced, QPOINTS)
    assert f_analytic.shape == (len(QPOINTS), 6)
    np.testing.assert_allclose(f_analytic, f_displaced, rtol=0.0, atol=0.01)  # THz
    assert np.abs(f_analytic).max() > 0.1  # not a trivial comparison of zeros
    # and the force constants themselves (eV/A^2) agree to the finite-difference error
    np.testing.assert_allclose(phonon.force_constants, displaced.force_constants, rtol=0.0, atol=1e-3)


def test_force_constants_symmetric_and_sum_rule(analytic):
    phonon, info = analytic
    fc = phonon.force_constants
    np.testing.assert_allclose(fc, fc.transpose(1, 0, 3, 2), rtol=0.0, atol=1e-12)
    scale = np.abs(fc).max()
    assert scale > 0.1
    assert np.abs(fc.sum(axis=1)).max() < 1e-8 * scale  # acoustic sum rule (translation invariance)
    assert info["natoms_supercell"] == 16
    assert info["max_asymmetry"] < 1e-8 * scale
    assert info["max_asr_violation"] < 1e-8 * scale


def test_gamma_acoustic_modes_vanish(analytic):
    freqs = _frequencies(analytic[0], [[0.0, 0.0, 0.0]])[0]
    acoustic = freqs[np.argsort(np.abs(freqs))[:3]]
    assert np.abs(acoustic).max() < 1e-3  # THz


def test_band_structure_path_and_labels(band, analytic):
    nq = band["qpoints"].shape[0]
    assert nq == 41 and band["frequencies"].shape == (nq, 6) and band["distances"].shape == (nq,)
    assert band["path"] == "GXWKGLUWLK,UX"
    assert band["labels"][0] == "\u0393" and "K|U" in band["labels"]
    assert len(band["labels"]) == len(band["label_positions"])
    assert np.all(np.diff(band["distances"]) >= -1e-12)
    # first q-point is Gamma, last is X = (1/2, 0, 1/2) in fractional coordinates of the primitive cell
    np.testing.assert_allclose(band["qpoints"][0], 0.0, atol=1e-12)
    np.testing.assert_allclose(band["qpoints"][-1], [0.5, 0.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(band["frequencies"][-1], _frequencies(analytic[0], [[0.5, 0.0, 0.5]])[0], atol=1e-9)


def test_dos_integrates_to_number_of_modes(analytic, total_dos):
    f, g = total_dos["frequency_points"], total_dos["total_dos"]  # tetrahedron method
    assert f.shape == g.shape and f.ndim == 1 and np.all(g >= -1e-9) and g.max() > 0
    mesh_freqs = analytic[0].mesh.frequencies  # THz, the mesh that gave the DOS
    assert f.min() <= mesh_freqs.min() and f.max() >= mesh_freqs.max()
    smeared = dos(analytic[0], mesh=(8, 8, 8), sigma=0.05)
    integral = float(np.trapezoid(smeared["total_dos"], smeared["frequency_points"]))
    assert integral == pytest.approx(6.0, rel=0.02)  # 3 x 2 atoms


def test_imaginary_modes_synthetic():
    qpoints = np.array([[0, 0, 0], [0.5, 0, 0.5], [0.25, 0, 0.25], [1.0, 0, 0], [0, 0, 0]], dtype=float)
    frequencies = np.array([
        [-0.04, -0.001, 0.0, 10.0, 10.0, 10.0],  # Gamma: acoustic modes within tolerance, ignored
        [-0.7, 0.5, 1.0, 2.0, 3.0, 4.0],  # X: one imaginary mode
        [-0.03, 0.5, 1.0, 2.0, 3.0, 4.0],  # within tolerance: not reported
        [-0.2, 0.0, 0.0, 0.0, 3.0, 4.0],  # (1, 0, 0) is Gamma: acoustic zeros ignored, optical -0.2 reported
        [-0.3, -0.01, 0.0, 0.01, 5.0, 5.0],  # Gamma: the three smallest |f| are acoustic; -0.3 reported
    ])
    found = imaginary_modes(frequencies, qpoints)
    assert IMAGINARY_TOLERANCE == 0.05
    assert [m["index"] for m in found] == [1, 3, 4]
    assert found[0]["qpoint"] == (0.5, 0.0, 0.5)
    assert found[0]["frequencies"] == [-0.7]
    assert found[1]["frequencies"] == [-0.2]
    assert found[2]["frequencies"] == [-0.3]
    assert imaginary_modes(frequencies, qpoints, tolerance=0.01)[1]["index"] == 2  # -0.03 now counts
    assert imaginary_modes(np.abs(frequencies), qpoints) == []


def test_imaginary_modes_rejects_bad_input():
    with pytest.raises(ConfigError):
        imaginary_modes(np.zeros((2, 6)), np.zeros((3, 3)))
    with pytest.raises(ConfigError):
        imaginary_modes(np.zeros((2, 6)), np.zeros((2, 3)), tolerance=-0.05)


def test_imaginary_modes_on_band(band):
    freqs, qpoints = band["frequencies"], band["qpoints"]
    found = {m["index"]: m for m in imaginary_modes(freqs, qpoints)}
    assert sorted(found) == [i for i, f in enumerate(freqs) if f.min() < -IMAGINARY_TOLERANCE]
    gammas = [i for i, q in enumerate(qpoints) if np.all(q == 0)]
    # G-X-W-K-G-...: Gamma twice; the random model is unstable at Gamma too (its optical modes are imaginary)
    assert len(gammas) == 2 and gammas[0] == 0
    for i in gammas:  # reported: the three optical modes, never the three acoustic zeros
        assert len(found[i]["frequencies"]) == 3 and max(found[i]["frequencies"]) < -1.0


def test_plot_phonons_writes_png(band, total_dos, tmp_path):
    out = tmp_path / "plots" / "phonons.png"
    plot_phonons(band, total_dos, out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert sorted(p.name for p in out.parent.iterdir()) == ["phonons.png"]  # no temporary file left


def test_non_periodic_cell_rejected(calc):
    molecule = bulk("Si", a=5.43)
    molecule.pbc = False
    with pytest.raises(ConfigError):
        force_constants_analytic(calc, molecule, SUPERCELL)
