"""``mlip-convert to-mace``: mlip -> mace-torch 0.3.16 (its own classes) -> mlip gives the same numbers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import write

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mace_support import max_diffs

from mlip.cli.convert import main
from mlip.io.mace import convert_mace_model_file
from mlip.io.model_file import save_model
from mlip.nn.hparams import ModelHyperparameters
from mlip.nn.model import build_model

_REPO_MACE = Path(__file__).resolve().parents[2] / ".venv-mace" / "bin" / "python"  # make mace-venv
MACE_PYTHON = Path(os.environ.get("MLIP_MACE_PYTHON", _REPO_MACE if _REPO_MACE.is_file() else "/tmp/macevenv/bin/python"))
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mace_from_mlip_export.py"
needs_mace = pytest.mark.skipif(not MACE_PYTHON.is_file(),
                                reason=f"no mace-torch 0.3.16 venv at {MACE_PYTHON} (set MLIP_MACE_PYTHON)")

_KINDS = {
    "density_zbl_agnesi_two_heads": dict(atomic_numbers=[1, 8], interaction_first="density", interaction="density_residual",
                                         pair_repulsion=True, distance_transform="agnesi", correlation=[3, 2]),
    "nonlinear_agnostic": dict(atomic_numbers=[1, 6, 8], interaction_first="nonlinear", interaction="nonlinear",
                               edge_irreps="4x0e + 4x1o", use_agnostic_product=True, apply_cutoff=False),
}


def _native_model(kind: str) -> torch.nn.Module:
    """A small mlip-built model with every parameter perturbed (so zero/one initial values are exercised)."""
    zs = _KINDS[kind]["atomic_numbers"]
    hp = ModelHyperparameters(heads=["a", "b"], atomic_energies=[[-1.0 - z for z in zs], [-2.0 - z for z in zs]],
                              scale=[0.8, 1.3], shift=[0.02, -0.01], avg_num_neighbors=4.0, r_max=3.5, num_bessel=4,
                              max_ell=2, hidden_irreps="8x0e + 8x1o", num_interactions=2, radial_mlp=[8, 8],
                              mlp_irreps="4x0e", **_KINDS[kind])
    torch.manual_seed(5)
    model = build_model(hp, dtype=torch.float64)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def _structures(zs: list[int], path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = [Atoms(numbers=rng.choice(zs, size=5), positions=rng.normal(scale=1.0, size=(5, 3))) for _ in range(2)]
    frames.append(Atoms(numbers=rng.choice(zs, size=4), positions=rng.uniform(size=(4, 3)) * 3.0,
                        cell=np.diag([3.0, 3.2, 3.1]), pbc=True))
    write(path, frames, format="extxyz")


@needs_mace
@pytest.mark.parametrize("kind", list(_KINDS))
def test_round_trip_through_mace_torch(kind, tmp_path):
    model = _native_model(kind)
    save_model(model, tmp_path / "model.pt")
    assert main(["to-mace", str(tmp_path / "model.pt"), "-o", str(tmp_path / "exported")]) == 0
    _structures(model.atomic_numbers, tmp_path / "structures.xyz")
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", OMP_NUM_THREADS="1", PYTHONPATH="")
    run = subprocess.run([str(MACE_PYTHON), str(SCRIPT), str(tmp_path / "exported"), "--save", str(tmp_path / "back.model"),
                          "--eval", str(tmp_path / "structures.xyz"), "--outputs", str(tmp_path / "outputs.npz")],
                         env=env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "loaded into ScaleShiftMACE: heads ['a', 'b']" in run.stdout
    # mace-torch's own model and neighbour lists reproduce the mlip model
    diffs = max_diffs(model, tmp_path)
    assert all(d < 1e-10 for d, _ in diffs.values()), diffs
    # and the .model mace-torch saved comes back through the safe reader with the same numbers
    back = convert_mace_model_file(tmp_path / "back.model")
    diffs = max_diffs(back, tmp_path)
    assert all(d < 1e-10 for d, _ in diffs.values()), diffs


def test_to_mace_refuses_what_mace_cannot_express(tmp_path, capsys):
    hp = ModelHyperparameters(atomic_numbers=[1, 8], atomic_energies=[[-1.0, -2.0]], r_max=3.0, num_bessel=4, max_ell=1,
                              hidden_irreps="4x0e + 4x1o", radial_mlp=[8], mlp_irreps="4x0e", edge_energy_readout=True)
    save_model(build_model(hp, dtype=torch.float64), tmp_path / "e3d.pt")
    assert main(["to-mace", str(tmp_path / "e3d.pt"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "edge-energy readout" in err
    assert not (tmp_path / "out" / "state_dict.npz").exists()
