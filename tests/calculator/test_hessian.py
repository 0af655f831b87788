"""MLIPCalculator.get_hessian: the analytic Hessian (double backward, chunked) equals finite differences of forces."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integrations"))

from integ_support import molecule, tiny_model, triclinic_cell  # noqa: E402

from mlip.calculator import MLIPCalculator  # noqa: E402


def _finite_difference(atoms, calc, h: float = 1e-4) -> np.ndarray:
    """``-dF/dr`` by central differences of the forces, [3N, 3N] (eV/A^2)."""
    n = len(atoms)
    out = np.zeros((3 * n, 3 * n))
    for i in range(n):
        for a in range(3):
            forces = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[i, a] += sign * h
                moved.calc = calc
                forces.append(moved.get_forces().reshape(-1))
            out[3 * i + a] = -(forces[0] - forces[1]) / (2 * h)
    return out


@pytest.mark.parametrize("structure", ["periodic", "molecule"])
def test_hessian_equals_finite_differences(structure):
    atoms = triclinic_cell() if structure == "periodic" else molecule()
    calc = MLIPCalculator(tiny_model(), dtype="float64", skin=0.0)
    analytic = calc.get_hessian(atoms, chunk=5)  # 5 does not divide 3N: a short last chunk
    assert analytic.shape == (3 * len(atoms), 3 * len(atoms))
    reference = _finite_difference(atoms, calc)
    assert np.abs(analytic - reference).max() < 1e-6, np.abs(analytic - reference).max()
    assert np.abs(analytic).max() > 1e-2  # not trivially zero
    translation = analytic.reshape(len(atoms), 3, -1).sum(axis=0)  # moving every atom by e_a changes no force
    np.testing.assert_allclose(translation, 0.0, atol=1e-9)


def test_hessian_chunks_agree_and_bad_chunk():
    atoms = molecule()
    calc = MLIPCalculator(tiny_model(), dtype="float64")
    np.testing.assert_allclose(calc.get_hessian(atoms, chunk=1), calc.get_hessian(atoms, chunk=64), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        calc.get_hessian(atoms, chunk=0)
