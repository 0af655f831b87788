"""How closely ``mpiexec -n N mlip-lammps`` reproduces the one-rank run: a table of largest differences.

    python scripts/lammps_mpi_parity.py [--ranks 2 3 4]

Runs the cases of tests/integrations/mpi_cases.py (a triclinic periodic cell, a ``p p f`` slab, a molecule in
an ``f f f`` box, subdomains thinner than ``r_max``; tiny random-weight Si/Mo model, float64; a static call,
then 100 NVE steps from ``velocity ... loop geom``) on 1 rank and on each ``--ranks`` count, and prints the
largest differences from one rank: energy (relative), virial pressure tensor (bar), forces (eV/A),
per-atom energies (eV), per-atom virials (relative to the largest) and positions after 100 steps (A).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parents[1] / "tests" / "integrations"
sys.path.insert(0, str(TESTS))

from integ_support import tiny_model  # noqa: E402
from mpi_cases import read_dump, read_thermo  # noqa: E402

CASES = ["triclinic", "slab", "molecule", "thin"]


def run(ranks: int, model: Path, out: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(TESTS), OMP_NUM_THREADS="1")
    command = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(ranks), sys.executable,
               str(TESTS / "mpi_cases.py"), str(model), str(out), *CASES]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{ranks} ranks failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


def differences(one: Path, many: Path) -> list[float]:
    s1, s = read_dump(one / "static.dump"), read_dump(many / "static.dump")
    t1, t = read_thermo(one / "log.lammps")[0], read_thermo(many / "log.lammps")[0]
    f1, f = read_dump(one / "final.dump"), read_dump(many / "final.dump")
    return [abs(t[1] - t1[1]) / abs(t1[1]), float(np.abs(np.subtract(t[2:8], t1[2:8])).max()),
            float(np.abs(s[:, 4:7] - s1[:, 4:7]).max()), float(np.abs(s[:, 7] - s1[:, 7]).max()),
            float(np.abs(s[:, 8:] - s1[:, 8:]).max() / np.abs(s1[:, 8:]).max()),
            float(np.abs(f[:, 1:4] - f1[:, 1:4]).max())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 3, 4])
    args = parser.parse_args(argv)
    from mlip.io.model_file import save_model

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        save_model(tiny_model(), root / "model.pt")
        for ranks in [1, *args.ranks]:
            run(ranks, root / "model.pt", root / f"n{ranks}")
        print("| case | ranks | atoms | energy (rel.) | pressure tensor (bar) | forces (eV/A) | pe/atom (eV) | "
              "stress/atom (rel.) | positions after 100 NVE steps (A) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for case in CASES:
            atoms = len(read_dump(root / "n1" / case / "static.dump"))
            for ranks in args.ranks:
                row = differences(root / "n1" / case, root / f"n{ranks}" / case)
                print(f"| {case} | {ranks} | {atoms} | " + " | ".join(f"{v:.1e}" for v in row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
