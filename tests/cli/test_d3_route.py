"""The D3(BJ) dispersion route (mlip.fidelity.tea.d3_correction, mlip-align tea --dispersion d3bj), run for real
with torch-dftd (in the test extra). Skipped with a reason when neither D3 package is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

HAVE_D3 = bool(importlib.util.find_spec("torch_dftd") or importlib.util.find_spec("dftd3"))
pytestmark = pytest.mark.skipif(not HAVE_D3, reason="no D3 package (pip install -e '.[test]' installs torch-dftd)")

REPO = Path(__file__).resolve().parents[2]
ACAC = REPO / "data" / "acac"


def test_d3_hook_physics():
    from ase import Atoms
    from ase.io import read

    from mlip.fidelity.tea import d3_correction

    hook = d3_correction("pbe", "bj")
    # Ar dimer: dispersion only attracts (negative, rising monotonically to 0 with distance)
    energies = [hook(Atoms("Ar2", positions=[[0, 0, 0], [0, 0, r]])).energy for r in (3.0, 3.8, 5.0, 8.0, 20.0)]
    assert all(e < 0 for e in energies[:-1]) and np.all(np.diff(energies) > 0) and abs(energies[-1]) < 1e-4
    # forces are minus the gradient of the energy (central differences) and sum to zero
    mol = read(ACAC / "train.xyz", index=0)
    terms = hook(mol)
    assert terms.stress is None and np.abs(terms.forces.sum(axis=0)).max() < 1e-8
    h = 3e-3  # torch-dftd evaluates in float32: a larger step keeps the difference above its rounding
    for atom, axis in ((0, 0), (7, 2), (14, 1)):
        plus, minus = mol.copy(), mol.copy()
        plus.positions[atom, axis] += h
        minus.positions[atom, axis] -= h
        fd = -(hook(plus).energy - hook(minus).energy) / (2 * h)
        assert terms.forces[atom, axis] == pytest.approx(fd, abs=1e-5)


def test_align_cli_removes_d3(tmp_path):
    import ase.io

    from mlip.cli.align import main

    frames = ase.io.read(ACAC / "train.xyz", index=":3")
    ase.io.write(tmp_path / "three.xyz", frames)
    iso = str(ACAC / "isolated_atoms.xyz")
    out = tmp_path / "out.xyz"
    # same isolated atoms at both levels and a = 1: the alignment is the identity, so only D3 is removed
    assert main(["tea", "--data", str(tmp_path / "three.xyz"), "--source-atoms", iso, "--target-atoms", iso,
                 "--scale", "1", "--dispersion", "d3bj", "-o", str(out)]) == 0
    aligned = ase.io.read(out, ":")
    if importlib.util.find_spec("torch_dftd"):
        from torch_dftd.torch_dftd3_calculator import TorchDFTD3Calculator

        ref = TorchDFTD3Calculator(xc="pbe", damping="bj")
    else:
        from dftd3.ase import DFTD3

        ref = DFTD3(method="pbe", damping="d3bj")
    for raw, new in zip(frames, aligned):
        probe = raw.copy()
        probe.calc = ref
        e_d3, f_d3 = probe.get_potential_energy(), probe.get_forces()
        assert -2.0 < e_d3 < -0.05  # a 15-atom organic molecule: a few hundred meV of dispersion
        assert new.get_potential_energy() == pytest.approx(raw.get_potential_energy() - e_d3, abs=1e-6)
        np.testing.assert_allclose(new.get_forces(), raw.get_forces() - f_d3, atol=1e-6)
