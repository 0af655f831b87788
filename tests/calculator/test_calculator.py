"""MLIPCalculator: results against independent references, heads, dtypes, no side effects, errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

from calc_support import morse_energy, si_cell
from mlip.calculator import MLIPCalculator
from mlip.inference import check_cell, perpendicular_widths
from mlip.errors import ConfigError, DataError


def test_pair_model_energy_forces_stress_against_references(pair_model):
    atoms = si_cell(repeat=(1, 1, 1))
    atoms.calc = MLIPCalculator(pair_model, dtype="float64")
    # energy against a brute-force numpy sum over ASE's own neighbour list
    assert atoms.get_potential_energy() == pytest.approx(morse_energy(pair_model, atoms), abs=1e-10)
    energies = atoms.get_potential_energies()
    assert energies.shape == (len(atoms),)
    assert energies.sum() == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
    forces = atoms.get_forces()
    assert np.abs(forces).max() > 0.01
    np.testing.assert_allclose(forces[[0, 5]], calculate_numerical_forces(atoms, eps=1e-5, iatoms=[0, 5]), atol=1e-7)
    stress = atoms.get_stress()
    assert stress.shape == (6,)
    np.testing.assert_allclose(stress, calculate_numerical_stress(atoms, eps=1e-6), atol=1e-7)
    assert atoms.calc.results["free_energy"] == atoms.calc.results["energy"]


def test_heads_by_name(pair_model):
    atoms = si_cell()
    default = MLIPCalculator(pair_model).get_potential_energy(atoms)
    other = MLIPCalculator(pair_model, head="other").get_potential_energy(atoms)
    assert default == pytest.approx(morse_energy(pair_model, atoms, head=0), abs=1e-10)
    assert other == pytest.approx(morse_energy(pair_model, atoms, head=1), abs=1e-10)
    with pytest.raises(ConfigError, match=r"unknown head 'dft'.*\['Default', 'other'\]"):
        MLIPCalculator(pair_model, head="dft")
    pair_model.heads = ["a", "b"]
    with pytest.raises(ConfigError, match=r"several heads \['a', 'b'\]"):
        MLIPCalculator(pair_model)


def test_caller_module_untouched_and_dtypes_coexist(pair_model):
    pair_model.train()
    before = {k: v.clone() for k, v in pair_model.state_dict().items()}
    default_dtype = torch.get_default_dtype()
    atoms = si_cell()
    calc32 = MLIPCalculator(pair_model, dtype="float32")
    calc64 = MLIPCalculator(pair_model, dtype="float64")
    e32 = calc32.get_potential_energy(atoms)
    e64 = calc64.get_potential_energy(atoms)
    f32, f64 = calc32.get_forces(atoms), calc64.get_forces(atoms)
    assert next(calc32.model.parameters()).dtype == torch.float32
    assert next(calc64.model.parameters()).dtype == torch.float64
    assert e32 != e64 and e32 == pytest.approx(e64, rel=1e-5)
    np.testing.assert_allclose(f32, f64, atol=1e-4)
    # second evaluation of the float64 calculator after the float32 one: unchanged
    assert MLIPCalculator(pair_model, dtype="float64").get_potential_energy(atoms) == e64
    assert torch.get_default_dtype() == default_dtype
    assert pair_model.training
    assert all(p.requires_grad and p.dtype == torch.float64 for p in pair_model.parameters())
    for key, value in pair_model.state_dict().items():
        assert torch.equal(value, before[key])


class CountingModel(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.atomic_numbers, self.heads, self.r_max = inner.atomic_numbers, inner.heads, inner.r_max
        self.calls = 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


def test_bad_inputs_fail_before_any_computation(pair_model):
    calc = MLIPCalculator(CountingModel(pair_model))
    with pytest.raises(DataError, match=r"Fe \(Z=26\).*unknown to the model; it knows H, C, O, Si"):
        calc.get_potential_energy(Atoms("SiFe", positions=[[0, 0, 0], [2, 0, 0]]))
    degenerate = Atoms("Si2", positions=[[0, 0, 0], [1, 1, 1]], cell=[[3, 0, 0], [0, 3, 0], [3, 3, 0]], pbc=True)
    with pytest.raises(DataError, match="degenerate periodic cell"):
        calc.get_potential_energy(degenerate)
    zero = Atoms("Si", cell=[[3, 0, 0], [0, 0, 0], [0, 0, 3]], pbc=True)
    with pytest.raises(DataError, match="degenerate periodic cell"):
        calc.get_potential_energy(zero)
    thin = Atoms("Si", cell=[0.1, 0.1, 0.1], pbc=True)
    with pytest.raises(DataError, match=r"cell too small for the model's cutoff.*periodic images"):
        calc.get_potential_energy(thin)
    with pytest.raises(PropertyNotImplementedError):
        calc.get_stress(molecule("H2O"))
    assert calc.model.calls == 0
    with pytest.raises(ConfigError, match="unknown dtype"):
        MLIPCalculator(pair_model, dtype="float16")
    with pytest.raises(ConfigError, match="unknown backend"):
        MLIPCalculator(pair_model, backend="jax")


def test_small_cells_and_thin_cells_are_allowed(pair_model):
    # A one-atom cell narrower than the cutoff is fine: the atom's own images are its neighbours.
    atoms = Atoms("Si", cell=[2.0, 2.5, 3.0], pbc=True)
    calc = MLIPCalculator(pair_model)
    assert np.isfinite(calc.get_potential_energy(atoms))
    # A wire (periodic along x only) with a zero cell elsewhere.
    wire = Atoms("Si2", positions=[[0, 0, 0], [1.2, 1.0, 0]], cell=[2.4, 0, 0], pbc=[True, False, False])
    assert np.isfinite(calc.get_potential_energy(wire))


def test_perpendicular_widths_by_hand():
    cell = np.array([[2.0, 0, 0], [1.0, 3.0, 0], [0.5, 0.5, 4.0]])
    # heights of the parallelepiped: V / area of the opposite face
    volume = abs(np.linalg.det(cell))
    expected = [volume / np.linalg.norm(np.cross(cell[1], cell[2])),
                volume / np.linalg.norm(np.cross(cell[0], cell[2])), 4.0]
    np.testing.assert_allclose(perpendicular_widths(cell, [True, True, True]), expected)
    # slab: x width is the distance of a0 from the line spanned by a1
    np.testing.assert_allclose(perpendicular_widths(cell, [True, True, False])[0], 6.0 / np.sqrt(10.0))
    assert perpendicular_widths(cell, [False, False, True])[2] == pytest.approx(np.linalg.norm(cell[2]))
    check_cell(cell, [True] * 3, cutoff=5.0)  # 7x5x5 images: accepted
    with pytest.raises(DataError):
        check_cell(cell, [True] * 3, cutoff=5.0, max_images=100)


def test_calculator_matches_direct_model_call(mace_model):
    from mlip.data.batch import collate
    from mlip.data.configuration import Configuration
    from mlip.data.graph import configuration_to_graph

    for atoms in (si_cell(), molecule("CH3CH2OH")):
        calc = MLIPCalculator(mace_model, dtype="float64")
        atoms.calc = calc
        config = Configuration(
            numbers=atoms.numbers.astype(np.int64), positions=atoms.positions.copy(),
            cell=atoms.cell.array.copy(), pbc=atoms.pbc.copy(),
        )
        batch = collate([configuration_to_graph(config, mace_model.r_max, mace_model.heads)], torch.float64)
        periodic = bool(atoms.pbc.all())
        out = mace_model(batch, compute_forces=True, compute_stress=periodic)
        assert atoms.get_potential_energy() == pytest.approx(float(out["energy"][0]), abs=1e-9)
        np.testing.assert_allclose(atoms.get_forces(), out["forces"].detach().numpy(), atol=1e-9)
        np.testing.assert_allclose(atoms.get_potential_energies(), out["node_energy"].detach().numpy(), atol=1e-9)
        if periodic:
            stress = out["stress"][0].detach().numpy()
            np.testing.assert_allclose(atoms.get_stress(voigt=False), stress, atol=1e-10)
            np.testing.assert_allclose(atoms.get_stress(), calculate_numerical_stress(atoms, eps=1e-6), atol=1e-7)


def test_model_file_and_float32_model_cast_to_float64(mace_model, tmp_path):
    from mlip.io.model_file import save_model

    path = tmp_path / "model.pt"
    save_model(mace_model, path)
    atoms = si_cell()
    from_module = MLIPCalculator(mace_model, dtype="float64").get_forces(atoms)
    from_file = MLIPCalculator(str(path), dtype="float64")
    np.testing.assert_array_equal(from_file.get_forces(atoms), from_module)
    # a float32 module cast up by the calculator agrees with the float64 one to float32 weight rounding
    model32 = copy.deepcopy(mace_model).to(torch.float32)
    up = MLIPCalculator(model32, dtype="float64").get_forces(atoms)
    np.testing.assert_allclose(up, from_module, atol=1e-5)
    assert next(model32.parameters()).dtype == torch.float32
