"""scripts/benchmark_carryover.py: stress RMSE from two small extended-XYZ files, and the choice of the first
checkpoint that reaches mace-torch's energy, force and stress errors together."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import benchmark_carryover as bc  # noqa: E402  (scripts are not a package)

REF_STRESS = np.array([[0.010, 0.002, 0.001], [0.002, -0.020, 0.003], [0.001, 0.003, 0.005]])  # eV/A^3


def _frame(energy: float, forces: np.ndarray, stress: np.ndarray | None, pbc: bool = True) -> Atoms:
    atoms = Atoms("Si2", positions=[[0, 0, 0], [1.3, 1.3, 1.3]], cell=np.eye(3) * 5.43 if pbc else None, pbc=pbc)
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces,
                                       stress=None if stress is None else stress.copy())
    return atoms


def _write_pair(tmp_path: Path) -> tuple[Path, Path]:
    """Reference: two periodic frames with stress and a molecule without; predictions with known errors."""
    forces = np.zeros((2, 3))
    refs = [_frame(-10.0, forces, REF_STRESS), _frame(-11.0, forces, REF_STRESS), _frame(-9.0, forces, None, False)]
    # frame 0: every one of the 9 components off by +0.001; frame 1: only xx off by -0.003 (9 components
    # written row-major, as mlip-eval does); frame 2: no stress on either side (skipped)
    pred_stress = [REF_STRESS + 0.001, REF_STRESS - np.diag([0.003, 0.0, 0.0])]
    preds = []
    for i, r in enumerate(refs):
        p = Atoms(r.numbers, positions=r.positions, cell=r.cell, pbc=r.pbc)
        p.info["MLIP_energy"] = r.get_potential_energy() + 0.002 * (i + 1)  # 1, 2, 3 meV/atom off
        p.arrays["MLIP_forces"] = forces + 0.01  # 10 meV/A on every component
        if i < 2:
            p.info["MLIP_stress"] = pred_stress[i].reshape(-1)
        preds.append(p)
    ref_path, pred_path = tmp_path / "ref.xyz", tmp_path / "pred.xyz"
    ase.io.write(ref_path, refs, format="extxyz")
    ase.io.write(pred_path, preds, format="extxyz")
    return ref_path, pred_path


def test_stress_rmse_over_nine_components_of_labelled_frames(tmp_path: Path) -> None:
    ref, pred = _write_pair(tmp_path)
    errors = bc.errors_with_stress(ref, pred, "MLIP_")
    # stress: squared errors 9 * 0.001^2 (frame 0) + 0.003^2 (frame 1) over 18 components -> 0.001 eV/A^3
    assert errors["n_stress_frames"] == 2
    assert errors["stress_rmse_meV_per_A3"] == pytest.approx(1.0, rel=1e-9)
    # energy and forces come from benchmark_train.test_errors, unchanged: sqrt((1 + 4 + 9) / 3) meV/atom
    assert errors["energy_rmse_meV_per_atom"] == pytest.approx(math.sqrt(14 / 3), rel=1e-9)
    assert errors["forces_rmse_meV_per_A"] == pytest.approx(10.0, rel=1e-9)
    assert errors["n_frames"] == 3


def test_voigt_and_full_stress_agree() -> None:
    voigt = [REF_STRESS[0, 0], REF_STRESS[1, 1], REF_STRESS[2, 2], REF_STRESS[1, 2], REF_STRESS[0, 2],
             REF_STRESS[0, 1]]
    np.testing.assert_array_equal(bc._full_stress(voigt), REF_STRESS)
    np.testing.assert_array_equal(bc._full_stress(REF_STRESS.reshape(-1)), REF_STRESS)
    with pytest.raises(ValueError):
        bc._full_stress([1.0, 2.0, 3.0])


def _point(name: str, e: float, f: float, s: float) -> dict:
    return {"name": name, "wall_s": float(name[-1]), "energy_rmse_meV_per_atom": e, "forces_rmse_meV_per_A": f,
            "stress_rmse_meV_per_A3": s}


def test_first_checkpoint_reaching_all_three_targets() -> None:
    target = {"energy_rmse_meV_per_atom": 2.0, "forces_rmse_meV_per_A": 50.0, "stress_rmse_meV_per_A3": 1.0}
    curve = [_point("epoch-1", 5.0, 80.0, 3.0),         # none reached
             _point("epoch-2", 1.5, 40.0, 1.2),         # E and F, not S
             _point("epoch-3", 2.0, 50.0, float("nan")),  # NaN stress never counts as reached
             _point("epoch-4", 2.0, 50.0, 1.0),         # all three, equal counts as reached
             _point("epoch-5", 1.0, 30.0, 0.5)]
    assert bc.first_reaching(curve, target)["name"] == "epoch-4"
    assert bc.first_reaching(curve[:4], {**target, "stress_rmse_meV_per_A3": 0.9}) is None
    assert bc.first_reaching([], target) is None


def test_mace_stress_weight_is_the_recipes_or_one_when_the_recipe_has_zero(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("loss:\n  energy_weight: 2.0\n  stress_weight: 0.0\n")
    weights, notes = bc.recipe_loss_weights(recipe, ["loss.forces_weight=10"])
    assert weights == {"energy": 2.0, "forces": 10.0, "stress": 0.0}
    assert any("stress weight is 0" in n for n in notes)
    args = bc.parse_args(["--mace-epochs", "3", "--mace-python", "py"])
    cmd = bc.mace_command(args, "si", tmp_path / "t.xyz", tmp_path / "m", weights)
    assert cmd[cmd.index("--stress_weight") + 1] == "1.0"
    assert cmd[cmd.index("--loss") + 1] == "stress"
    assert cmd[cmd.index("--max_num_epochs") + 1] == "3"
    weights, notes = bc.recipe_loss_weights(recipe, ["loss.stress_weight=5"])
    assert weights["stress"] == 5.0 and not notes
    cmd = bc.mace_command(args, "si", tmp_path / "t.xyz", tmp_path / "m", weights)
    assert cmd[cmd.index("--stress_weight") + 1] == "5.0"
