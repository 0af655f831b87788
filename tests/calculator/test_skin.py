"""Neighbour-list reuse with a skin gives bitwise the results of a rebuild at every call."""

from __future__ import annotations

import numpy as np
from ase import units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet

from calc_support import si_cell
from mlip.calculator import MLIPCalculator
from mlip.data.neighbors import SkinNeighborList
from mlip.data.neighbors import neighbor_list


def _run_md(model, skin, steps=25):
    atoms = si_cell(repeat=(2, 2, 1), rattle=0.02, seed=3)
    MaxwellBoltzmannDistribution(atoms, temperature_K=2500, rng=np.random.default_rng(0))
    calc = MLIPCalculator(model, dtype="float64", skin=skin)
    atoms.calc = calc
    energies, forces, stresses = [], [], []

    def record():
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces().copy())
        stresses.append(atoms.get_stress().copy())

    dyn = VelocityVerlet(atoms, timestep=2.0 * units.fs)
    dyn.attach(record, interval=1)
    dyn.run(steps)
    return np.array(energies), np.array(forces), np.array(stresses), calc.neighbors.num_builds


def test_skin_reuse_bitwise_identical_to_fresh_rebuild(pair_model):
    e0, f0, s0, builds0 = _run_md(pair_model, skin=0.0)
    e1, f1, s1, builds1 = _run_md(pair_model, skin=0.3)
    assert builds0 == len(e0)  # skin 0: a new list every call
    assert 1 < builds1 < len(e1) // 2  # atoms at 2500 K do cross skin/2 a few times
    assert np.array_equal(e0, e1) and np.array_equal(f0, f1) and np.array_equal(s0, s1)


def test_skin_list_equals_fresh_list_and_rebuild_rules():
    rng = np.random.default_rng(1)
    atoms = si_cell(repeat=(2, 2, 2), rattle=0.0)
    cell, pbc, numbers = atoms.cell.array, atoms.pbc, atoms.numbers
    cached = SkinNeighborList(cutoff=3.0, skin=1.0)
    positions = atoms.positions.copy()
    for step in range(6):
        positions = positions + rng.uniform(-0.15, 0.15, positions.shape)
        edges, shifts = cached.update(positions, cell, pbc, numbers)
        s, r, sh, _ = neighbor_list(positions, cell, pbc, 3.0)
        fresh = sorted(zip(r.tolist(), s.tolist(), map(tuple, sh.tolist())))
        assert sorted(zip(edges[1].tolist(), edges[0].tolist(), map(tuple, shifts.tolist()))) == fresh
        assert len(fresh) > 0
    # one step moves an atom at most 0.15*sqrt(3) = 0.26 < skin/2: no rebuild at every step; a random walk of 6 steps does cross skin/2
    assert 1 < cached.num_builds < 6
    builds = cached.num_builds
    cached.update(positions, cell * 1.001, pbc, numbers)
    assert cached.num_builds == builds + 1  # cell change
    numbers2 = numbers.copy()
    numbers2[0] = 6
    cached.update(positions, cell * 1.001, pbc, numbers2)
    assert cached.num_builds == builds + 2  # numbers change
