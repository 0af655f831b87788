"""Property checks of issue 27 (mlip.analysis.properties, mlip.analysis.md_checks) against exact references.

Random-weight models give no physical crystal, so the machinery is tested with ASE's analytic EMT potential
(fcc Cu: positive, cubic moduli) and, for the Hessian path, the tiny mlip model against finite differences.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.optimize import BFGS
from ase.stress import voigt_6_to_full_3x3_stress

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integrations"))
from integ_support import molecule, tiny_model  # noqa: E402

from mlip.analysis.md_checks import (  # noqa: E402
    closest_pair, max_rdf_radius, min_pair_distance, nvt_md, plot_md, rdf,
)
from mlip.analysis.properties import (  # noqa: E402
    elastic_constants_energy, elastic_tensor, equation_of_state, finite_difference_hessian, hessian_to_frequencies,
    plot_eos, plot_parity, relative_energy_parity, stress_parity, vibrational_frequencies,
)
from mlip.calculator import MLIPCalculator  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The tiny model runs fastest on one thread; on a loaded 2-core machine more threads contend (10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cu(cubic: bool = True) -> Atoms:
    return bulk("Cu", "fcc", a=3.6, cubic=cubic)


def test_eos_and_elastic_tensor_of_emt_copper_are_consistent(tmp_path):
    eos = equation_of_state(cu(), EMT())
    assert len(eos.volumes) == 9 and eos.eos == "birchmurnaghan" and eos.seconds >= 0
    assert eos.volumes.min() < eos.v0 < eos.volumes.max() and eos.b0_gpa > 0
    el = elastic_tensor(cu(), EMT())
    c = el.c_gpa
    assert c[0, 0] > c[0, 1] > 0 and c[3, 3] > 0
    np.testing.assert_allclose(np.diag(c)[:3], c[0, 0], rtol=0.01)  # cubic: C11 = C22 = C33
    np.testing.assert_allclose(np.diag(c)[3:], c[3, 3], rtol=0.01)  # C44 = C55 = C66
    np.testing.assert_allclose([c[0, 2], c[1, 2]], c[0, 1], rtol=0.01)  # C12 = C13 = C23
    off_cubic = np.abs(c[:3, 3:]).max(), np.abs(c[3:, 3:] - np.diag(np.diag(c)[3:])).max()
    assert max(off_cubic) < 1e-3 * c[0, 0]
    assert el.bulk_voigt == pytest.approx((c[0, 0] + 2 * c[0, 1]) / 3, rel=1e-3)
    assert el.bulk_voigt == pytest.approx(eos.b0_gpa, rel=0.05)
    assert el.bulk_voigt >= el.bulk_hill - 1e-6 and el.bulk_hill >= el.bulk_reuss - 1e-6
    assert el.shear_voigt > el.shear_hill > el.shear_reuss > 0  # Cu is anisotropic: strict
    assert el.stresses_gpa.shape == (6, 4, 6) and el.strains == (-0.01, -0.005, 0.005, 0.01) and el.relax_ions
    assert plot_eos(eos, tmp_path / "eos.png").read_bytes().startswith(PNG)


def test_elastic_tensor_one_atom_cell_relaxation_changes_nothing():
    relaxed = elastic_tensor(cu(cubic=False), EMT(), strains=(-0.005, 0.005), relax_ions=True)
    fixed = elastic_tensor(cu(cubic=False), EMT(), strains=(-0.005, 0.005), relax_ions=False)
    np.testing.assert_allclose(relaxed.c_gpa, fixed.c_gpa, atol=1e-9)
    assert relaxed.relax_steps.sum() == 0 and not fixed.relax_ions and fixed.strains == (-0.005, 0.005)


EMT_CU_A0 = 3.58982559
"""EMT's zero-stress fcc Cu lattice constant (A): FrechetCellFilter + BFGS to fmax 1e-6 from a = 3.6."""


def cu_at_equilibrium() -> Atoms:
    """4-atom cubic fcc Cu at EMT's zero-stress lattice (every atom an inversion centre: no internal strain)."""
    atoms = bulk("Cu", "fcc", a=EMT_CU_A0, cubic=True)
    atoms.calc = EMT()
    assert np.abs(atoms.get_stress()).max() / units.GPa < 1e-3  # zero stress: no pressure terms in E(s)
    atoms.calc = None
    return atoms


def test_energy_and_stress_routes_give_the_same_cubic_constants():
    atoms = cu_at_equilibrium()
    stress = elastic_tensor(atoms, EMT(), relax_ions=True)
    energy = elastic_constants_energy(atoms, EMT(), relax_ions=True)
    c = stress.c_gpa
    for name, value in (("c11", c[0, 0]), ("c12", c[0, 1]), ("c44", c[3, 3])):
        assert energy[name] == pytest.approx(value, rel=0.02), name  # measured: within 0.1%
    assert energy["c11"] > energy["c12"] > 0 and energy["c44"] > 0
    assert energy["strains"] == (-0.01, -0.005, 0.0, 0.005, 0.01) and energy["settings"]["degree"] == 3
    assert set(energy["energies"]) == {"c11", "c11+c12", "c44"} and energy["energies"]["c44"].shape == (5,)
    assert energy["v0"] == pytest.approx(EMT_CU_A0 ** 3) and energy["max_residual_force"] < 1e-3
    for mode in energy["energies"].values():  # a minimum at zero strain
        assert np.argmin(mode) == 2
    assert energy["seconds"] >= 0
    with pytest.raises(ValueError, match="degree-3"):
        elastic_constants_energy(atoms, EMT(), strains=(-0.01, 0.0, 0.01))


def test_eos_bulk_modulus_matches_stress_route_voigt_bulk():
    atoms = cu_at_equilibrium()
    eos = equation_of_state(atoms, EMT(), strains=np.linspace(-0.01, 0.01, 9))
    c = elastic_tensor(atoms, EMT()).c_gpa
    assert eos.b0_gpa == pytest.approx((c[0, 0] + 2 * c[0, 1]) / 3, rel=0.03)  # measured: within 0.05%
    assert eos.v0 == pytest.approx(atoms.get_volume(), rel=1e-4)


def test_stress_parity_reads_info_and_single_point_stress():
    frames = []
    for k, scale in enumerate((0.98, 1.0, 1.02)):
        atoms = cu()
        atoms.set_cell(atoms.cell * scale, scale_atoms=True)
        atoms.rattle(0.02, seed=k)
        atoms.calc = EMT()
        stress = atoms.get_stress()
        if k == 0:  # a full 3x3 in info
            atoms.calc = None
            atoms.info["stress"] = voigt_6_to_full_3x3_stress(stress)
        else:
            atoms.calc = SinglePointCalculator(atoms, energy=0.0, stress=stress)
        frames.append(atoms)
    out = stress_parity(frames, EMT())
    assert out["reference_gpa"].shape == (3, 6) and out["n_frames"] == 3
    assert out["rmse_gpa"] < 1e-9 and np.abs(out["model_gpa"]).max() > 0.1
    biased = stress_parity(frames, _Shifted(0.01))
    assert biased["rmse_gpa"] > 0.1


class _Shifted(EMT):
    """EMT with a constant stress offset (eV/A^3) added: a model that disagrees with the reference."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = offset

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        if "stress" in self.results:
            self.results["stress"] = self.results["stress"] + self.offset


def test_relative_energy_parity_is_zero_against_itself(tmp_path):
    frames = []
    for k in range(4):
        atoms = cu()
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        atoms.info["energy"] = atoms.get_potential_energy() + 7.0  # a constant offset cancels in relative energies
        atoms.info["config_type"] = "rattled" if k < 2 else "strained"
        atoms.calc = None
        frames.append(atoms)
    out = relative_energy_parity(frames, EMT())
    assert set(out["groups"]) == {"rattled", "strained"}
    for group in out["groups"].values():
        assert group["rmse_mev_per_atom"] == pytest.approx(0.0, abs=1e-9)
        assert group["reference_ev"].min() == 0.0 and len(group["indices"]) == 2
    assert plot_parity(out, tmp_path / "parity.png").read_bytes().startswith(PNG)


def test_tiny_model_frequencies_match_finite_differences():
    calc = MLIPCalculator(tiny_model(), dtype="float64", skin=0.0)
    atoms = molecule()
    analytic = vibrational_frequencies(atoms, calc)
    assert analytic.hessian_method == "analytic" and analytic.n_rigid == 6 and analytic.rigid.sum() == 6
    fd_hessian = finite_difference_hessian(atoms, calc, 1e-4)
    np.testing.assert_allclose(calc.get_hessian(atoms, 16), fd_hessian, atol=1e-6)  # eV/A^2
    numeric, _ = hessian_to_frequencies(fd_hessian, atoms.get_masses())
    # random weights make a soft molecule: only two modes above 50 cm^-1, so also compare all above 5 cm^-1
    large = np.abs(analytic.frequencies_cm) > 50
    assert large.sum() >= 2
    np.testing.assert_allclose(analytic.frequencies_cm[large], numeric[large], atol=1.0)
    clear = np.abs(analytic.frequencies_cm) > 5
    assert clear.sum() >= 12
    np.testing.assert_allclose(analytic.frequencies_cm[clear], numeric[clear], atol=0.1)


def test_emt_dimer_has_five_rigid_modes():
    dimer = Atoms("Cu2", positions=[[0, 0, 0], [2.3, 0, 0]])
    dimer.calc = EMT()
    BFGS(dimer, logfile=None).run(fmax=1e-5)
    vib = vibrational_frequencies(dimer, EMT())  # EMT has no get_hessian: finite differences
    assert vib.linear and vib.n_rigid == 5 and vib.hessian_method == "finite difference"
    assert np.abs(vib.frequencies_cm[vib.rigid]).max() < 5.0
    stretch = vib.frequencies_cm[~vib.rigid]
    assert stretch.shape == (1,) and stretch[0] > 50


def test_nvt_md_stable_and_unstable(tmp_path):
    cell = cu().repeat(2)
    d_train = min_pair_distance([cell])
    assert d_train == pytest.approx(3.6 / np.sqrt(2), rel=1e-9)
    md = nvt_md(cell, EMT(), temperature_K=300, steps=30, min_training_distance=d_train, rdf_r_max=3.5, rdf_bins=35)
    for trace in (md.time_fs, md.potential_energy, md.total_energy, md.temperature, md.min_distance):
        assert trace.shape == (31,) and np.all(np.isfinite(trace))
    assert md.verdict == "stable" and 50 < md.temperature.mean() < 1000 and md.threshold == pytest.approx(d_train / 2)
    first_peak = md.rdf_r[np.argmax(md.rdf_g)]
    assert abs(first_peak - d_train) < 0.3
    assert plot_md(md, tmp_path / "md.png").read_bytes().startswith(PNG)
    squeezed = cell.copy()
    squeezed.positions[1] = squeezed.positions[0] + [0.9, 0.0, 0.0]
    bad = nvt_md(squeezed, EMT(), steps=3, min_training_distance=d_train, thermostat="bussi")
    assert bad.verdict.startswith("unstable: atoms 0,1 at 0.900 A at step 0")
    with pytest.raises(ValueError, match="thermostat"):
        nvt_md(cell, EMT(), steps=1, thermostat="nose")


def test_rdf_of_periodic_ideal_gas_tends_to_one_and_closest_pair():
    rng = np.random.default_rng(0)
    gas = Atoms("Ar300", positions=rng.uniform(0, 12, (300, 3)), cell=[12, 12, 12], pbc=True)
    r, g = rdf([gas], r_max=5.5, bins=11)
    assert np.mean(g[4:]) == pytest.approx(1.0, abs=0.1)
    assert max_rdf_radius(gas) == pytest.approx(6.0)
    with pytest.raises(ValueError, match="half the cell width"):
        rdf([gas], r_max=6.5)
    pair = Atoms("H2", positions=[[0.1, 0, 0], [9.9, 0, 0]], cell=[10, 10, 10], pbc=True)
    assert closest_pair(pair) == pytest.approx((0.2, 0, 1))
    pair.pbc = False
    assert closest_pair(pair)[0] == pytest.approx(9.8)


def test_mlip_calculator_runs_md_and_eos():
    from integ_support import triclinic_cell

    calc = MLIPCalculator(tiny_model(), dtype="float64")
    atoms = triclinic_cell()
    md = nvt_md(atoms, calc, steps=3, temperature_K=100, rdf_r_max=2.5, rdf_bins=10)
    assert md.temperature.shape == (4,) and np.all(np.isfinite(md.total_energy))
    capped = nvt_md(atoms, calc, steps=1, temperature_K=100, rdf_r_max=50.0, rdf_bins=10)
    assert capped.rdf_r_max == pytest.approx(max_rdf_radius(atoms)) and capped.rdf_r_max < 3.0
    eos = equation_of_state(atoms, calc, strains=np.linspace(-0.02, 0.02, 5))
    assert eos.energies.shape == (5,) and np.all(np.isfinite(eos.energies))
