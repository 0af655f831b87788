"""Model-free radial descriptor: invariances and a periodic brute-force value."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from scipy.spatial.transform import Rotation

from mlip.errors import DataError
from mlip.fidelity.descriptors import radial_descriptors


def _g(r, cutoff=5.0, n=8, r_min=0.5):
    """Hand evaluation of the documented formula for one distance (per-pair contribution)."""
    mu = np.linspace(r_min, cutoff, n)
    sigma = (cutoff - r_min) / (n - 1)
    return np.exp(-((r - mu) ** 2) / (2 * sigma**2)) * 0.5 * (np.cos(np.pi * r / cutoff) + 1.0)


def test_dimer_value():
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 1.1]])
    d = radial_descriptors([atoms])
    np.testing.assert_allclose(d[0], _g(1.1) / 2, rtol=1e-12)


def test_invariances():
    atoms = molecule("CH3CH2OH")
    rot = Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).as_matrix()
    moved = atoms.copy()
    moved.positions = atoms.positions @ rot.T + np.array([3.0, -2.0, 7.0])
    perm = np.random.default_rng(0).permutation(len(atoms))
    moved = moved[perm]
    d1, d2 = radial_descriptors([atoms, moved])
    np.testing.assert_allclose(d1, d2, atol=1e-12)


def test_periodic_simple_cubic_and_supercell():
    a = 3.0
    atoms = Atoms("Si", positions=[[0, 0, 0]], cell=np.eye(3) * a, pbc=True)
    # half list within 5 A: 3 pairs at a, 6 at a*sqrt(2) (shell 3 at a*sqrt(3)=5.196 is outside)
    expected = 3 * _g(a) + 6 * _g(a * np.sqrt(2))
    d = radial_descriptors([atoms, atoms.repeat((2, 2, 1))])
    np.testing.assert_allclose(d[0], expected, rtol=1e-10)
    np.testing.assert_allclose(d[1], expected, rtol=1e-10)


def test_species_list_fixed_dimension():
    frames = [molecule("H2O"), molecule("CH4")]
    d = radial_descriptors(frames, species=[1, 6, 8], n_radial=4)
    assert d.shape == (2, 6 * 4)
    with pytest.raises(DataError, match="not in"):
        radial_descriptors([molecule("NH3")], species=[1, 6, 8])
