"""E0s (isolated / mapping / least squares), neighbour counts, force RMS, interaction energies."""

from __future__ import annotations

import numpy as np
import pytest

from data_testlib import DATA
from mlip.data.configuration import Configuration
from mlip.data.io import read_configurations
from mlip.data.stats import compute_e0s, compute_statistics, e0s_by_least_squares, mean_neighbor_count
from mlip.errors import DataError

TRUE_E0 = {1: -13.6, 6: -1027.0, 8: -2038.0}


def molecules(seed=0, count=30, noise=0.0):
    """Frames of random composition whose energy is sum E0 + 0.1 eV/atom (+ noise)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        n = int(rng.integers(2, 7))
        numbers = rng.choice([1, 6, 8], n)
        positions = np.arange(n)[:, None] * np.array([1.5, 0.0, 0.0])
        energy = sum(TRUE_E0[int(z)] for z in numbers) + 0.1 * n + noise * rng.normal()
        out.append(Configuration(numbers=numbers, positions=positions, energy=energy,
                                 forces=np.full((n, 3), 2.0), source=f"m:{k}"))
    return out


def test_least_squares_recovers_offsets():
    e0s = e0s_by_least_squares(molecules(), [1, 6, 8])
    for z, value in TRUE_E0.items():
        assert e0s[z] == pytest.approx(value + 0.1, abs=1e-8)


def test_least_squares_with_noise_close():
    e0s = e0s_by_least_squares(molecules(seed=1, count=200, noise=0.01), [1, 6, 8])
    for z, value in TRUE_E0.items():
        assert e0s[z] == pytest.approx(value + 0.1, abs=0.01)


def test_least_squares_missing_element_is_an_error():
    with pytest.raises(DataError, match="cannot fit E0 for N"):
        e0s_by_least_squares(molecules(), [1, 6, 7, 8])


def test_isolated_and_mapping():
    configs = read_configurations(DATA / "acac" / "isolated_atoms.xyz")
    e0s = compute_e0s("isolated", configs, [1, 6, 8])
    assert e0s == {1: pytest.approx(-13.568422178253735), 6: pytest.approx(-1026.8538996116154),
                   8: pytest.approx(-2037.796869412825)}
    assert compute_e0s({"H": -1.0, 6: -2.0, "8": -3.0}, [], [1, 6, 8]) == {1: -1.0, 6: -2.0, 8: -3.0}
    with pytest.raises(DataError, match="no value given for O"):
        compute_e0s({"H": -1.0, "C": -2.0}, [], [1, 6, 8])
    with pytest.raises(DataError, match="no isolated-atom frame"):
        compute_e0s("isolated", configs, [1, 6, 7, 8])


def test_mean_neighbor_count_by_hand():
    # Three atoms on a line, 1 A apart, cutoff 1.5: edges 0-1, 1-2 both ways = 4 over 3 atoms.
    line = Configuration(numbers=[1, 1, 1], positions=[[0, 0, 0], [1, 0, 0], [2, 0, 0]])
    assert mean_neighbor_count([line], 1.5) == pytest.approx(4 / 3)
    # Simple cubic, a = 2 A, cutoff 2.5: 6 neighbours per atom.
    sc = Configuration(numbers=[14], positions=[[0, 0, 0]], cell=np.eye(3) * 2, pbc=[True] * 3)
    assert mean_neighbor_count([sc], 2.5) == pytest.approx(6.0)


def test_compute_statistics_per_head():
    a = molecules(seed=2, count=20)
    b = molecules(seed=3, count=20)
    for c in b:
        c.head = "b"
        c.energy += 100.0 * c.n_atoms  # a different level of theory: E0 shifted by 100 eV/atom
        c.forces = c.forces * 2
    stats = compute_statistics(a + b, r_max=2.0, atomic_numbers=[1, 6, 8], e0s_spec="fit", heads=["Default", "b"])
    assert stats["Default"]["e0s"][6] == pytest.approx(TRUE_E0[6] + 0.1)
    assert stats["b"]["e0s"][6] == pytest.approx(TRUE_E0[6] + 100.1)
    assert stats["Default"]["rms_forces"] == pytest.approx(2.0)
    assert stats["b"]["rms_forces"] == pytest.approx(4.0)
    assert stats["Default"]["mean_interaction_energy"] == pytest.approx(0.0, abs=1e-8)
    # Atoms 1.5 A apart in a line, cutoff 2: neighbours = 2(n-1) per frame.
    edges = sum(2 * (c.n_atoms - 1) for c in a)
    assert stats["Default"]["avg_num_neighbors"] == pytest.approx(edges / sum(c.n_atoms for c in a))
    # With a mapping the interaction energy per atom is (E - sum E0)/N = 0.1 eV exactly.
    mapped = compute_statistics(a, 2.0, [1, 6, 8], TRUE_E0)
    assert mapped["Default"]["mean_interaction_energy"] == pytest.approx(0.1)
    assert mapped["Default"]["std_interaction_energy"] == pytest.approx(0.0, abs=1e-9)
    # Per-head spec.
    per_head = compute_statistics(a + b, 2.0, [1, 6, 8], {"Default": TRUE_E0, "b": "fit"}, ["Default", "b"])
    assert per_head["Default"]["e0s"] == TRUE_E0


def test_acac_isolated_statistics():
    configs = read_configurations(DATA / "acac" / "train.xyz") + read_configurations(DATA / "acac" / "isolated_atoms.xyz")
    stats = compute_statistics(configs, 5.0, [1, 6, 8], "isolated")["Default"]
    assert stats["n_frames"] == 103
    # C5H8O2: interaction energy per atom about -4.9 eV (atomisation energy ~73 eV / 15 atoms).
    assert -5.5 < stats["mean_interaction_energy"] < -4.0
    assert 10 < stats["avg_num_neighbors"] < 14  # 15-atom molecule, r_max 5 A: most atoms see most others


def test_statistics_input_errors():
    frames = molecules(count=5)
    frames[2].head = "other"
    with pytest.raises(DataError, match="unknown head 'other'"):
        compute_statistics(frames, 2.0, [1, 6, 8], TRUE_E0)
    with pytest.raises(DataError, match=r"m:\d+: key 'species': element O"):
        compute_statistics(molecules(count=5), 2.0, [1, 6], {"H": 0.0, "C": 0.0})
    with pytest.raises(DataError, match="unknown value 'guess'"):
        compute_statistics(molecules(count=5), 2.0, [1, 6, 8], "guess")
