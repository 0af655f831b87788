"""``mpiexec -n N mlip-lammps``: the same input on 1, 2, 3 and 4 MPI ranks gives the same results.

Every case (a triclinic periodic cell, a ``p p f`` slab, a molecule in an ``f f f`` box, and a cell whose
subdomains are thinner than ``r_max``) runs through ``mlip-lammps``'s own ``main`` under the mpich wheel's
``mpiexec`` (tests/integrations/mpi_cases.py). Compared with one rank: energy, the pressure tensor, forces,
per-atom energies (``compute pe/atom``) and per-atom virials (``compute stress/atom``) of the static call, and
positions and forces after 100 NVE steps. On one rank: per-atom energies sum to pe and equal the ASE
calculator's, per-atom virials sum to the global virial.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from integ_support import lammps_or_skip, tiny_model
from mpi_cases import cases, read_dump, read_thermo

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
CASES = ["triclinic", "slab", "molecule", "thin"]
RANKS = [2, 3, 4]


def _mpiexec() -> Path:
    launcher = Path(sys.executable).parent / "mpiexec"
    if not launcher.exists():
        pytest.fail(f"no mpiexec beside {sys.executable}: the lammps extra installs the mpich wheel with it")
    return launcher


def _launch(ranks: int, args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(HERE), OMP_NUM_THREADS="1")
    return subprocess.run([str(_mpiexec()), "-n", str(ranks), sys.executable, *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[int, Path]:
    """Output folders of every case on 1, 2, 3 and 4 ranks (one mpiexec launch per rank count)."""
    lammps_or_skip()
    from mlip.io.model_file import save_model

    root = tmp_path_factory.mktemp("mpi")
    save_model(tiny_model(), root / "model.pt")
    folders = {}
    for ranks in [1, *RANKS]:
        folders[ranks] = root / f"ranks{ranks}"
        result = _launch(ranks, [str(HERE / "mpi_cases.py"), str(root / "model.pt"), str(folders[ranks]), *CASES])
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert f"(rank 0 of {ranks})" in result.stdout
    return folders


@pytest.mark.parametrize("ranks", RANKS)
@pytest.mark.parametrize("case", CASES)
def test_ranks_equal_one_rank(runs, case, ranks):
    one, many = runs[1] / case, runs[ranks] / case
    static1, static = read_dump(one / "static.dump"), read_dump(many / "static.dump")
    thermo1, thermo = read_thermo(one / "log.lammps"), read_thermo(many / "log.lammps")
    np.testing.assert_array_equal(static[:, 0], static1[:, 0])  # the same atom IDs, sorted
    assert abs(thermo[0][1] - thermo1[0][1]) <= 1e-9 * abs(thermo1[0][1])  # pe, eV
    np.testing.assert_allclose(thermo[0][2:8], thermo1[0][2:8], rtol=0, atol=1e-9 * max(1.0, np.abs(thermo1[0][2:8]).max()))
    np.testing.assert_allclose(static[:, 4:7], static1[:, 4:7], rtol=0, atol=1e-10)  # forces, eV/A
    np.testing.assert_allclose(static[:, 7], static1[:, 7], rtol=0, atol=1e-10)  # pe/atom, eV
    virial_scale = max(1.0, np.abs(static1[:, 8:]).max())  # stress/atom, bar A^3
    np.testing.assert_allclose(static[:, 8:], static1[:, 8:], rtol=0, atol=1e-10 * virial_scale)
    final1, final = read_dump(one / "final.dump"), read_dump(many / "final.dump")
    np.testing.assert_allclose(final[:, 1:4], final1[:, 1:4], rtol=0, atol=1e-9)  # positions after 100 NVE steps
    np.testing.assert_allclose(final[:, 4:7], final1[:, 4:7], rtol=0, atol=1e-9)
    assert [row[0] for row in thermo] == [row[0] for row in thermo1] == [0, 0, 50, 100]


@pytest.mark.parametrize("case", CASES)
def test_per_atom_values_on_one_rank(runs, case):
    from mlip.calculator import MLIPCalculator

    folder = runs[1] / case
    static, thermo = read_dump(folder / "static.dump"), read_thermo(folder / "log.lammps")[0]
    pe, pressure_virial, volume = thermo[1], np.array(thermo[2:8]), thermo[8]
    assert abs(static[:, 7].sum() - pe) <= 1e-10 * abs(pe)
    if case != "molecule":  # an open box has no volume to turn virials into a pressure
        # sum over atoms of stress/atom (-virial, bar A^3) = -(virial pressure tensor) x volume
        np.testing.assert_allclose(static[:, 8:].sum(axis=0), -pressure_virial * volume, rtol=0,
                                   atol=1e-9 * max(1.0, np.abs(pressure_virial).max() * volume))
    atoms, *_ = cases()[case]
    atoms = atoms.copy()
    atoms.calc = MLIPCalculator(tiny_model())
    order = np.argsort(static[:, 0])
    np.testing.assert_allclose(static[order, 7], atoms.get_potential_energies(), rtol=0, atol=1e-10)


def test_more_ranks_than_atoms_is_one_line(tmp_path):
    lammps_or_skip()
    from mlip.io.model_file import save_model

    save_model(tiny_model(), tmp_path / "model.pt")
    script = tmp_path / "in.lammps"
    script.write_text("units metal\natom_style atomic\nboundary f f f\nregion box block 0 10 0 10 0 10\n"
                      "create_box 2 box\ncreate_atoms 1 single 5 5 5\ncreate_atoms 2 single 7 5 5\n"
                      "mass * 28.0\nfix mlip all external pf/callback 1 1\nrun 0\n")
    result = _launch(3, ["-m", "mlip.cli.lammps", "--model", str(tmp_path / "model.pt"), "--elements", "Si", "Mo",
                         "-in", str(script), "-log", "none", "-screen", "none"], timeout=300)
    assert result.returncode != 0
    assert "3 MPI ranks for 2 atoms: a rank needs atoms to own; run on at most 2" in result.stderr
    assert "Traceback" not in result.stderr
