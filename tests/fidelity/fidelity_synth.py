"""Synthetic frames for the fidelity tests (hand-chosen numbers, no shared data needed)."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

# isolated-atom energies (eV) of two made-up levels of theory
E0_SOURCE = {1: -10.0, 6: -50.0, 8: -100.0}
E0_TARGET = {1: -13.0, 6: -1030.0, 8: -2040.0}


def make_frames(seed: int = 0, n_per: int = 3, stress: bool = False) -> list[Atoms]:
    """Frames of H2O, CH4 and CO2-like molecules (random geometry) with energy, forces (and stress)."""
    rng = np.random.default_rng(seed)
    frames = []
    for formula in ("H2O", "CH4", "CO2"):
        for _ in range(n_per):
            atoms = Atoms(formula, positions=rng.normal(scale=1.2, size=(len(Atoms(formula)), 3)))
            if stress:
                atoms.cell = np.eye(3) * 8.0
                atoms.pbc = True
            e_at = rng.uniform(5.0, 20.0)  # atomization energy at the source level
            energy = sum(E0_SOURCE[int(z)] for z in atoms.numbers) - e_at
            results = {"energy": energy, "forces": rng.normal(size=(len(atoms), 3))}
            if stress:
                results["stress"] = rng.normal(scale=0.01, size=6)
            atoms.calc = SinglePointCalculator(atoms, **results)
            frames.append(atoms)
    return frames


def isolated(e0: dict[int, float]) -> list[Atoms]:
    out = []
    for z, e in e0.items():
        atoms = Atoms(numbers=[z], positions=[[0.0, 0.0, 0.0]])
        atoms.calc = SinglePointCalculator(atoms, energy=e)
        out.append(atoms)
    return out
