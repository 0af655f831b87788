"""Neighbour lists against a brute-force reference over explicit lattice translations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mlip.data.neighbors import edge_vectors, neighbor_list


def brute_force(positions, cell, pbc, cutoff):
    """Set of (sender, receiver, shift) with |pos[r] - pos[s] + S @ cell| < cutoff, by enumeration."""
    positions = np.asarray(positions, float)
    ranges = []
    for d in range(3):
        if not pbc[d]:
            ranges.append([0])
            continue
        a, b = cell[(d + 1) % 3], cell[(d + 2) % 3]
        volume = abs(np.linalg.det(cell))
        height = volume / np.linalg.norm(np.cross(a, b))
        extent = np.abs(positions @ np.linalg.inv(cell)[:, d]).max()  # positions outside the cell
        n = int(np.ceil(cutoff / height + extent)) + 1
        ranges.append(range(-n, n + 1))
    shifts = np.array(list(itertools.product(*ranges)), dtype=float)
    # vectors[s, i, j] for all shifts and pairs, vectorised over pairs.
    diff = positions[None, :, :] - positions[:, None, :]  # [i, j] = pos[j] - pos[i]
    result = set()
    for shift in shifts:
        d = np.linalg.norm(diff + shift @ cell, axis=-1)
        i, j = np.nonzero(d < cutoff)
        for a, b in zip(i.tolist(), j.tolist()):
            if a == b and not shift.any():
                continue
            result.add((a, b, tuple(int(x) for x in shift)))
    return result


def as_set(sender, receiver, shifts):
    return {(int(a), int(b), tuple(int(x) for x in s)) for a, b, s in zip(sender, receiver, shifts)}


def check(positions, cell, pbc, cutoff):
    sender, receiver, shifts, distances = neighbor_list(positions, cell, pbc, cutoff)
    assert sender.dtype == np.int64 and shifts.dtype == np.int64
    got = as_set(sender, receiver, shifts)
    assert len(got) == len(sender), "duplicate edges"
    expected = brute_force(positions, np.asarray(cell, float), pbc, cutoff)
    assert got == expected
    vectors = edge_vectors(np.asarray(positions), np.asarray(cell, float), sender, receiver, shifts)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), distances, atol=1e-10)
    # Both directions with opposite shifts.
    assert {(b, a, tuple(-x for x in s)) for a, b, s in got} == got
    return got


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_periodic_cells(seed):
    rng = np.random.default_rng(seed)
    cell = np.diag(rng.uniform(4.0, 7.0, 3)) + rng.uniform(-1.0, 1.0, (3, 3))
    positions = rng.uniform(0, 1, (8, 3)) @ cell
    check(positions, cell, [True, True, True], 3.5)


def test_triclinic_cell_smaller_than_cutoff():
    cell = np.array([[2.0, 0.0, 0.0], [1.3, 1.8, 0.0], [0.6, 0.5, 1.7]])
    rng = np.random.default_rng(7)
    positions = rng.uniform(0, 1, (3, 3)) @ cell
    got = check(positions, cell, [True, True, True], 4.0)
    # Many images, including self-images with non-zero shift.
    assert any(a == b for a, b, _ in got)
    assert max(max(abs(x) for x in s) for _, _, s in got) >= 2


def test_single_atom_many_images():
    # One atom in a 1 A cubic cell, cutoff 1.5: neighbours at 1 (6), sqrt2 (12) -> 18 self-images.
    sender, receiver, shifts, distances = neighbor_list(np.zeros((1, 3)), np.eye(3), [True] * 3, 1.5)
    assert len(sender) == 18
    np.testing.assert_allclose(np.sort(distances), [1.0] * 6 + [np.sqrt(2)] * 12)


def test_slab_mixed_pbc():
    rng = np.random.default_rng(3)
    cell = np.array([[3.0, 0.0, 0.0], [0.8, 2.7, 0.0], [0.0, 0.0, 6.0]])
    positions = rng.uniform(0, 1, (6, 3)) @ cell
    got = check(positions, cell, [True, True, False], 3.2)
    assert all(s[2] == 0 for _, _, s in got)
    assert any(s[0] != 0 for _, _, s in got)


def test_slab_with_zero_vacuum_vector():
    rng = np.random.default_rng(4)
    cell = np.array([[3.0, 0.0, 0.0], [0.8, 2.7, 0.0], [0.0, 0.0, 0.0]])
    positions = rng.uniform(0, 3, (5, 3))
    sender, receiver, shifts, _ = neighbor_list(positions, cell, [True, True, False], 3.0)
    full = cell.copy()
    full[2] = [0, 0, 100.0]
    assert as_set(sender, receiver, shifts) == brute_force(positions, full, [True, True, False], 3.0)


def test_molecule_zero_cell():
    rng = np.random.default_rng(5)
    positions = rng.uniform(-2, 2, (10, 3))
    got = check(positions, np.zeros((3, 3)), [False] * 3, 2.5)
    assert all(s == (0, 0, 0) for _, _, s in got)
    # Hand count: every pair within the cutoff in both directions.
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    assert len(got) == int((d < 2.5).sum()) - 10


def test_positions_outside_cell():
    rng = np.random.default_rng(6)
    cell = np.diag([4.0, 5.0, 4.5])
    positions = rng.uniform(-1.5, 2.5, (6, 3)) @ cell
    check(positions, cell, [True, True, True], 3.0)


def test_two_atoms_hand_example():
    # Two atoms 1 A apart in a 10 A box: exactly the two directed edges, shift 0.
    sender, receiver, shifts, distances = neighbor_list(
        np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), np.eye(3) * 10, [True] * 3, 2.0
    )
    assert sorted(zip(sender.tolist(), receiver.tolist())) == [(0, 1), (1, 0)]
    assert not shifts.any()
    np.testing.assert_allclose(distances, [1.0, 1.0])
