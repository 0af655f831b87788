"""The calculator inside ASE's integrators, optimisers and cell filter (real MACE model, random weights)."""

from __future__ import annotations

import numpy as np
from ase import units
from ase.filters import FrechetCellFilter
from ase.md.langevin import Langevin
from ase.md.nose_hoover_chain import IsotropicMTKNPT
from ase.md.melchionna import MelchionnaNPT
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

from calc_support import si_cell
from mlip.calculator import MLIPCalculator


def test_nve_energy_conservation_si_float64(mace_model):
    atoms = si_cell(repeat=(1, 1, 1), rattle=0.03, seed=2)  # 8-atom cubic Si cell
    MaxwellBoltzmannDistribution(atoms, temperature_K=600, rng=np.random.default_rng(0))
    Stationary(atoms)
    atoms.calc = MLIPCalculator(mace_model, dtype="float64", skin=0.5)
    total = []
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dyn.attach(lambda: total.append(atoms.get_total_energy()), interval=1)
    dyn.run(200)
    total = np.array(total)
    kinetic_moved = atoms.get_kinetic_energy()
    assert kinetic_moved > 0.01  # the atoms really move
    drift = np.abs(total - total[0]).max() / len(atoms)
    assert drift < 1e-4, drift


def _off_equilibrium_si(calc: MLIPCalculator, target: float) -> tuple[FrechetCellFilter, float]:
    """An 8-atom Si cell compressed by 5 % and rattled until the filter's largest force (atoms and
    cell) is at least ``target``: the precondition is checked on the actual model, so the test does
    not hinge on how flat one set of random weights happens to be near the diamond structure."""
    for rattle in (0.3, 0.45, 0.6):
        atoms = si_cell(repeat=(1, 1, 1), rattle=rattle, seed=4)
        atoms.set_cell(atoms.cell * 0.95, scale_atoms=True)
        atoms.calc = calc
        filtered = FrechetCellFilter(atoms)
        fmax = np.linalg.norm(filtered.get_forces(), axis=1).max()
        if fmax >= target:
            return filtered, fmax
    raise AssertionError(f"no clearly non-relaxed start found (largest fmax {fmax:.3g} < {target})")


def test_frechet_cell_relaxation(mace_model):
    calc = MLIPCalculator(mace_model, dtype="float64")
    filtered, start_fmax = _off_equilibrium_si(calc, target=0.05)  # 5x the convergence target
    atoms = filtered.atoms
    volume = atoms.get_volume()
    start_energy = atoms.get_potential_energy()
    converged = BFGS(filtered, logfile=None).run(fmax=0.01, steps=300)
    assert converged
    # fmax covers atoms and cell: FrechetCellFilter's cell force is stress * V / N
    assert np.linalg.norm(filtered.get_forces(), axis=1).max() < 0.01
    assert np.abs(atoms.get_stress()).max() * atoms.get_volume() / len(atoms) < 0.01 * np.sqrt(3)
    assert atoms.get_volume() != volume  # the cell did relax
    # ... downhill. (Random weights have no physical minimum, and where BFGS ends on that landscape
    # depends on floating-point summation order, i.e. on the thread count: assert nothing about it.)
    assert atoms.get_potential_energy() < start_energy


def test_langevin_and_npt_run(mace_model):
    atoms = si_cell(repeat=(1, 1, 1), rattle=0.03, seed=5)
    atoms.calc = MLIPCalculator(mace_model, dtype="float64")
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(1))
    Langevin(atoms, 1.0 * units.fs, temperature_K=300, friction=0.02, fixcm=False, rng=np.random.default_rng(2)).run(5)
    positions = atoms.positions.copy()
    volume = atoms.get_volume()
    IsotropicMTKNPT(atoms, 1.0 * units.fs, temperature_K=300, pressure_au=1.0 * units.GPa,
                    tdamp=25 * units.fs, pdamp=250 * units.fs).run(5)
    MelchionnaNPT(atoms, 1.0 * units.fs, temperature_K=300, externalstress=0.0, ttime=25 * units.fs,
        pfactor=(75 * units.fs) ** 2 * 100 * units.GPa, mask=np.eye(3)).run(5)
    assert not np.allclose(atoms.positions, positions)
    assert atoms.get_volume() != volume
    assert np.isfinite(atoms.get_potential_energy())
