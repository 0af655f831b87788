"""Run the multi-rank LAMMPS cases through ``mlip-lammps``'s own ``main`` (the code ``mpiexec -n N mlip-lammps``
runs), once per case, and leave each case's thermo log and per-atom dumps in a folder.

Usage (from tests/integrations/test_lammps_mpi.py): ``mpiexec -n N python mpi_cases.py MODEL OUT CASE...``.
The same inputs on any number of ranks: LAMMPS decomposes the box, velocities come from ``loop geom``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from ase import Atoms
from integ_support import ELEMENTS, MASSES, lammps_types, molecule, triclinic_cell

STEPS = 100
"""NVE steps after the static evaluation."""


def cases() -> dict[str, tuple[Atoms, str, str, str]]:
    """``name -> (atoms, boundary, commands before the fix, after it)``; all Si/Mo, restricted-triclinic cells."""
    bulk = triclinic_cell().repeat((2, 2, 1))
    slab = triclinic_cell(seed=4).repeat((2, 1, 1))
    cell = slab.cell.array.copy()
    cell[2] = [0.0, 0.0, 2.5 * cell[2, 2]]  # vacuum along z; LAMMPS wants no xz/yz tilt with 'f' in z
    slab.set_cell(cell)
    slab.positions += [0.0, 0.0, 4.0]
    slab.pbc = [True, True, False]
    thin = triclinic_cell(seed=6).repeat((2, 1, 1))
    return {
        # a ghost cutoff and skin of the user's, too small for the model: mlip-lammps raises the cutoff
        "triclinic": (bulk, "p p p", "", "neighbor 1.0 bin\ncomm_modify cutoff 1.0\n"),
        "slab": (slab, "p p f", "", ""),
        "molecule": (molecule(), "f f f", "", ""),
        # 3 or 4 ranks along x: subdomains 3.6 or 2.7 A wide, thinner than r_max (4 A)
        "thin": (thin, "p p p", "processors * 1 1\n", ""),
    }


def lammps_input(atoms: Atoms, boundary: str, before: str, after: str, out: Path) -> str:
    """An input: box, atoms, the mlip fix, per-atom computes, a static dump, 100 NVE steps, a final dump."""
    a, b, c = atoms.cell.array
    if boundary == "f f f":
        region = "region box block 0 12 0 12 0 12"
    else:
        lx, ly, lz, xy, xz, yz = (repr(float(v)) for v in (a[0], b[1], c[2], b[0], c[0], c[1]))
        region = f"region box prism 0 {lx} 0 {ly} 0 {lz} {xy} {xz} {yz}"
    lines = ["units metal", "atom_style atomic", f"boundary {boundary}", before.strip(), region, "create_box 2 box"]
    for t, position in zip(lammps_types(atoms), atoms.positions):
        x, y, z = (repr(float(v)) for v in position)
        lines.append(f"create_atoms {t} single {x} {y} {z} remap yes")
    lines += [f"mass {t} {m}" for t, m in MASSES.items()]
    columns = "id x y z fx fy fz c_pea c_sa[1] c_sa[2] c_sa[3] c_sa[4] c_sa[5] c_sa[6]"
    lines += [
        "fix mlip all external pf/callback 1 1",
        after.strip(),
        "compute pea all pe/atom",
        "compute sa all stress/atom NULL virial",
        "compute pv all pressure NULL virial",
        "thermo_style custom step pe c_pv[1] c_pv[2] c_pv[3] c_pv[4] c_pv[5] c_pv[6] vol",
        "thermo_modify format float %.17g",
        f"dump static all custom 1 {out / 'static.dump'} {columns}",
        "dump_modify static sort id format float %.17g",
        "run 0",
        "undump static",
        "velocity all create 300 4928459 loop geom",
        "timestep 0.001",
        "fix nve all nve",
        "thermo 50",
        f"run {STEPS}",
        f"write_dump all custom {out / 'final.dump'} id x y z fx fy fz modify sort id format float %.17g",
    ]
    return "\n".join(line for line in lines if line) + "\n"


def main(model: str, out: str, names: list[str]) -> int:
    from mlip.cli.lammps import main as mlip_lammps
    from mlip.files import atomic_write_text

    every = cases()
    for name in names:
        folder = Path(out) / name
        folder.mkdir(parents=True, exist_ok=True)
        script = folder / "in.lammps"
        # every rank writes the same input: atomically, or a rank may read a file another is rewriting
        atomic_write_text(script, lammps_input(*every[name], folder))
        code = mlip_lammps(["--model", model, "--elements", *ELEMENTS, "-in", str(script),
                            "-log", str(folder / "log.lammps"), "-screen", "none"])
        if code != 0:
            return code
    return 0


def read_dump(path: Path) -> np.ndarray:
    """The per-atom rows of a LAMMPS custom dump (sorted by id), as float64 [N, columns]."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ITEM: ATOMS")) + 1
    return np.array([[float(v) for v in line.split()] for line in lines[start:]])


def read_thermo(path: Path) -> list[list[float]]:
    """Thermo rows (numbers only) of a LAMMPS log, in order."""
    rows, inside = [], False
    for line in path.read_text().splitlines():
        words = line.split()
        if words[:2] == ["Step", "PotEng"]:
            inside = True
        elif inside and words and words[0].lstrip("-").isdigit():
            rows.append([float(w) for w in words])
        else:
            inside = False
    return rows


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
