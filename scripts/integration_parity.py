#!/usr/bin/env python
"""Parity numbers of the engine integrations against MLIPCalculator (float64), as measured by tests/integrations.

Prints, for the tiny random-weight Si/Mo model of tests/integrations/integ_support.py:

* LAMMPS ``fix external``: max |dE|, max |dF|, max |d virial| on the 8-atom triclinic cell and the
  6-atom molecule (open boundaries);
* NVE: energy drift (max |E_tot(t) - E_tot(0)|) over 40 steps of 1 fs at 600 K, LAMMPS and ASE, and the
  largest position difference after 40 steps;
* NPT: |virial pressure (LAMMPS) - (-trace(stress)/3) (calculator)| after 30 steps, in bar;
* torch-sim: max |dE|, |dF|, |d stress| of the batch (boxed molecule, cubic cell, triclinic cell);
* ML-IAP unified: max |dE|, |dF| with pairs from LAMMPS's neighbour list.

    python scripts/integration_parity.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integrations"))

import torch
from ase.md.verlet import VelocityVerlet
from ase.units import fs
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
from mlip.integrations.lammps import attach, box_to_cell

NKTV2P = 1.6021765e6  # LAMMPS metal: eV/A^3 -> bar
VOIGT = ([0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2])


def _reference(model, atoms):
    atoms = atoms.copy()
    atoms.calc = MLIPCalculator(model)
    return atoms


def lammps_static(model, atoms, periodic):
    lmp = new_lammps()
    lmp.commands_string(lammps_setup(atoms, periodic=periodic) + "compute pv all pressure NULL virial\n"
                        "thermo_style custom step pe vol c_pv\n")
    attach(lmp, model, ELEMENTS)
    lmp.command("run 0")
    ref = _reference(model, atoms)
    de = abs(lmp.get_thermo("pe") - ref.get_potential_energy())
    df = np.abs(sorted_by_id(lmp, "f", len(atoms)) - ref.get_forces()).max()
    w = np.array([lmp.numpy.extract_compute("pv", 0, 1)[k] for k in range(6)]) * lmp.get_thermo("vol") / NKTV2P
    if periodic:
        expected = (-ref.get_stress(voigt=False) * ref.get_volume())[VOIGT]
    else:
        expected = np.einsum("ia,ib->ab", atoms.positions, ref.get_forces())[VOIGT]
    lmp.close()
    return de, df, np.abs(w - expected).max()


def nve(model):
    atoms = triclinic_cell(seed=5)
    lmp = new_lammps()
    lmp.commands_string(lammps_setup(atoms) + "velocity all create 600 4928459 mom yes rot no dist gaussian\n"
                        "timestep 0.001\nfix nve all nve\nthermo_style custom step pe ke etotal\n")
    attach(lmp, model, ELEMENTS)
    lmp.command("run 0")
    x0, v0 = sorted_by_id(lmp, "x", len(atoms)), sorted_by_id(lmp, "v", len(atoms))
    e_lmp = [lmp.get_thermo("etotal")]
    for _ in range(40):
        lmp.command("run 1 pre no post no")
        e_lmp.append(lmp.get_thermo("etotal"))
    x_lmp = sorted_by_id(lmp, "x", len(atoms))
    lmp.close()
    ref = _reference(model, atoms)
    ref.positions = x0
    ref.set_masses([MASSES[t] for t in lammps_types(atoms)])
    ref.set_velocities(v0 / (1000 * fs))
    e_ase = [ref.get_total_energy()]
    dyn = VelocityVerlet(ref, timestep=1.0 * fs)
    for _ in range(40):
        dyn.run(1)
        e_ase.append(ref.get_total_energy())
    drift = [float(np.abs(np.array(e) - e[0]).max()) for e in (e_lmp, e_ase)]
    return drift[0], drift[1], np.abs(x_lmp - ref.positions).max()


def npt(model):
    atoms = triclinic_cell(seed=7)
    lmp = new_lammps()
    lmp.commands_string(lammps_setup(atoms) + "velocity all create 300 87287 mom yes rot no\ntimestep 0.001\n"
                        "fix npt all npt temp 300 300 0.05 iso 0 0 0.5\ncompute pv all pressure NULL virial\n"
                        "thermo_style custom step pe press vol c_pv\n")
    attach(lmp, model, ELEMENTS)
    lmp.command("run 30")
    boxlo, boxhi, xy, yz, xz, _, _ = lmp.extract_box()
    origin, cell = box_to_cell(boxlo, boxhi, xy, yz, xz)
    ref = _reference(model, atoms)
    ref.set_cell(cell)
    ref.positions = sorted_by_id(lmp, "x", len(atoms)) - origin
    p_calc = -np.trace(ref.get_stress(voigt=False)) / 3 * NKTV2P
    p_lmp = lmp.numpy.extract_compute("pv", 0, 0)
    press = lmp.get_thermo("press")
    lmp.close()
    return p_lmp, p_calc, press


def torchsim(model):
    import torch_sim as ts
    from test_torchsim import _systems

    from mlip.integrations.torchsim import MLIPTorchSimModel

    systems = _systems()
    out = MLIPTorchSimModel(model)(ts.io.atoms_to_state(systems, torch.device("cpu"), torch.float64))
    worst = np.zeros(3)
    start = 0
    for s, atoms in enumerate(systems):
        ref = _reference(model, atoms)
        n = len(atoms)
        worst = np.maximum(worst, [abs(float(out["energy"][s]) - ref.get_potential_energy()),
                                   np.abs(out["forces"][start:start + n].numpy() - ref.get_forces()).max(),
                                   np.abs(out["stress"][s].numpy() - ref.get_stress(voigt=False)).max()])
        start += n
    return worst


def mliap():
    from test_mliap import lammps_pairs

    from mlip.integrations.mliap import MLIPMLIAPUnified

    rows = []
    for interactions, atoms, periodic, ghosts in ((1, triclinic_cell(), True, False), (2, triclinic_cell(), True, True),
                                                  (2, molecule(), False, False)):
        unified = MLIPMLIAPUnified(tiny_model(num_interactions=interactions))
        data, tags = lammps_pairs(atoms, unified.r_max, periodic=periodic, ghost_pairs=ghosts)
        unified.compute_forces(data)
        ref = _reference(unified.model, atoms)
        owners = np.zeros((len(atoms), 3))
        np.add.at(owners, tags - 1, data.f)
        rows.append((interactions, periodic, abs(data.energy - ref.get_potential_energy()),
                     np.abs(owners - ref.get_forces()).max()))
    return rows


def main() -> None:
    model = tiny_model()
    for name, atoms, periodic in (("triclinic periodic", triclinic_cell(), True), ("molecule, open", molecule(), False)):
        de, df, dw = lammps_static(model, atoms, periodic)
        print(f"LAMMPS fix external, {name}: |dE| {de:.1e} eV, max |dF| {df:.1e} eV/A, max |dW| {dw:.1e} eV")
    d_lmp, d_ase, dx = nve(model)
    print(f"NVE 40 x 1 fs, 600 K: drift LAMMPS {d_lmp:.2e} eV, ASE {d_ase:.2e} eV, max |dx| after 40 steps {dx:.1e} A")
    p_lmp, p_calc, press = npt(model)
    print(f"NPT 30 steps: virial pressure LAMMPS {p_lmp:.6f} bar, calculator -tr(stress)/3 {p_calc:.6f} bar "
          f"(|d| {abs(p_lmp - p_calc):.1e} bar); thermo press incl. kinetic {press:.3f} bar")
    de, df, ds = torchsim(model)
    print(f"torch-sim batch of 3: max |dE| {de:.1e} eV, |dF| {df:.1e} eV/A, |d stress| {ds:.1e} eV/A^3")
    for interactions, periodic, de, df in mliap():
        print(f"ML-IAP unified, {interactions} interaction(s), {'periodic' if periodic else 'molecule'}: "
              f"|dE| {de:.1e} eV, max |dF| {df:.1e} eV/A")


if __name__ == "__main__":
    main()
