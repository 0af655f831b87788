"""torch-sim ModelInterface: a batch of different systems against MLIPCalculator one by one; batched relaxation and NVT.

Skipped with a reason when torch-sim (``pip install -e ".[torchsim]"``) is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from integ_support import MO, molecule, tiny_model, triclinic_cell

from mlip.calculator import MLIPCalculator

ts = pytest.importorskip("torch_sim", reason="torch-sim not installed: pip install -e '.[torchsim]'")
from mlip.integrations.torchsim import MLIPTorchSimModel


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def _systems() -> list[Atoms]:
    boxed = molecule()
    boxed.set_cell(np.diag([16.0, 16.0, 16.0]))  # > 4 A of vacuum: the same neighbours as open boundaries
    boxed.pbc = True
    cubic = bulk("Si", "diamond", a=5.43, cubic=True)
    cubic.numbers[3] = MO
    cubic.rattle(0.05, seed=2)
    return [boxed, cubic, triclinic_cell()]


def _reference(model, atoms: Atoms) -> dict[str, np.ndarray]:
    atoms = atoms.copy()
    atoms.calc = MLIPCalculator(model)
    return {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(), "stress": atoms.get_stress(voigt=False)}


def test_batch_matches_calculator_one_by_one(model):
    systems = _systems()
    ts_model = MLIPTorchSimModel(model, dtype=torch.float64)
    state = ts.io.atoms_to_state(systems, ts_model.device, ts_model.dtype)
    out = ts_model(state)
    assert out["energy"].shape == (3,) and out["forces"].shape == (22, 3) and out["stress"].shape == (3, 3, 3)
    start = 0
    for s, atoms in enumerate(systems):
        ref = _reference(model, atoms)
        n = len(atoms)
        assert abs(float(out["energy"][s]) - ref["energy"]) < 1e-10
        assert np.abs(out["forces"][start:start + n].numpy() - ref["forces"]).max() < 1e-10
        assert np.abs(out["stress"][s].numpy() - ref["stress"]).max() < 1e-10
        start += n
    # The boxed molecule is the open-boundary molecule: same energy and forces without a cell.
    free = molecule()
    free.calc = MLIPCalculator(model)
    assert abs(float(out["energy"][0]) - free.get_potential_energy()) < 1e-10


def test_per_system_pbc_dict(model):
    """A state dict with per-system periodicity: the molecule open (zero cell, zero stress), the crystals periodic."""
    systems = _systems()
    systems[0] = molecule()
    ts_model = MLIPTorchSimModel(model, dtype="float64")
    state = {
        "positions": torch.tensor(np.concatenate([a.positions for a in systems])),
        "cell": torch.tensor(np.stack([a.cell.array.T for a in systems])),
        "atomic_numbers": torch.tensor(np.concatenate([a.numbers for a in systems])),
        "system_idx": torch.repeat_interleave(torch.arange(3), torch.tensor([len(a) for a in systems])),
        "pbc": torch.tensor([[False] * 3, [True] * 3, [True] * 3]),
    }
    out = ts_model(state)
    mol = systems[0].copy()
    mol.calc = MLIPCalculator(model)
    assert abs(float(out["energy"][0]) - mol.get_potential_energy()) < 1e-10
    assert np.abs(out["forces"][:6].numpy() - mol.get_forces()).max() < 1e-10
    assert torch.all(out["stress"][0] == 0)
    assert abs(float(out["energy"][2]) - _reference(model, systems[2])["energy"]) < 1e-10


def test_batched_relaxation_lowers_every_energy(model):
    systems = _systems()[1:]
    for atoms in systems:
        atoms.rattle(0.15, seed=11)
    ts_model = MLIPTorchSimModel(model)
    state = ts.io.atoms_to_state(systems, ts_model.device, ts_model.dtype)
    before = ts_model(state)
    with pytest.warns(UserWarning, match="max steps"):  # 25 FIRE steps do not converge; energy must drop
        relaxed = ts.optimize(state, ts_model, optimizer=ts.frechet_cell_fire, max_steps=25)
    after = ts_model(relaxed)
    assert torch.all(after["energy"] < before["energy"] - 1e-3), (before["energy"], after["energy"])
    for s in range(2):
        f_before = before["forces"][state.system_idx == s].norm(dim=1).max()
        f_after = after["forces"][relaxed.system_idx == s].norm(dim=1).max()
        assert f_after < f_before


def test_batched_nvt_runs(model):
    systems = _systems()
    ts_model = MLIPTorchSimModel(model)
    state = ts.io.atoms_to_state(systems, ts_model.device, ts_model.dtype)
    final = ts.integrate(state, ts_model, integrator=ts.nvt_langevin, n_steps=10, timestep=0.001, temperature=300, seed=1)
    assert final.positions.shape == state.positions.shape
    assert torch.isfinite(final.positions).all() and not torch.equal(final.positions, state.positions)
    kinetic = ts.calc_kinetic_energy(momenta=final.momenta, masses=final.masses, system_idx=final.system_idx)
    assert kinetic.shape == (3,) and torch.all(kinetic > 0)
    # The integrator's final energies are the model's energies of the final positions (per system).
    for s, atoms in enumerate(systems):
        moved = atoms.copy()
        moved.positions = final.positions[final.system_idx == s].numpy()
        assert abs(float(final.energy[s]) - _reference(model, moved)["energy"]) < 1e-9


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (never run: no GPU on the development machines)")
def test_cuda_batch_matches_cpu(model):
    systems = _systems()
    cpu = MLIPTorchSimModel(model)
    gpu = MLIPTorchSimModel(model, device="cuda")
    out_cpu = cpu(ts.io.atoms_to_state(systems, cpu.device, cpu.dtype))
    out_gpu = gpu(ts.io.atoms_to_state(systems, gpu.device, gpu.dtype))
    for key in ("energy", "forces", "stress"):
        assert torch.allclose(out_gpu[key].cpu(), out_cpu[key], atol=1e-9, rtol=0), key


def test_float32_close_to_float64(model):
    systems = _systems()
    single = MLIPTorchSimModel(model, dtype=torch.float32)
    double = MLIPTorchSimModel(model, dtype=torch.float64)
    out32 = single(ts.io.atoms_to_state(systems, single.device, single.dtype))
    out64 = double(ts.io.atoms_to_state(systems, double.device, double.dtype))
    assert out32["energy"].dtype == torch.float32
    assert torch.allclose(out32["energy"].double(), out64["energy"], atol=1e-4, rtol=0)
    assert torch.allclose(out32["forces"].double(), out64["forces"], atol=1e-4, rtol=0)
