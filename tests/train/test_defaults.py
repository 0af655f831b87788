"""The training defaults are the measured recipe (issue 25); old model files and old configs keep their values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mlip.config import AUTO_STRESS_WEIGHT, config_from_dict
from mlip.io.model_file import load_model, read_model_info

from train_support import ACAC, REPO, slice_xyz

OLD = REPO / "tests" / "fixtures" / "old_model_70b55ac"


def _predict(model: torch.nn.Module, path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """Energies [n] (eV) and forces ([N_i, 3] eV/A each) of every frame of ``path`` through the ASE calculator."""
    import ase.io

    from mlip.calculator import MLIPCalculator

    calc = MLIPCalculator(model=model, dtype="float64")
    energies, forces = [], []
    for atoms in ase.io.read(path, ":"):
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces())
    return np.array(energies), forces


def test_model_file_written_before_the_new_defaults_gives_the_same_outputs(tmp_path):
    """tests/fixtures/old_model_70b55ac: trained and evaluated by the code before the defaults changed."""
    info, _ = read_model_info(OLD / "model.pt")
    hp = info["hparams"]
    assert hp["interaction_first"] == "residual" and hp["shift"] != [0.0]  # the old defaults, stored
    model = load_model(OLD / "model.pt")
    assert next(model.parameters()).dtype == torch.float64
    ref = json.loads((OLD / "outputs.json").read_text())
    frames = slice_xyz(ACAC / "test.xyz", tmp_path / "frames.xyz", 3)
    energies, forces = _predict(model, frames)
    np.testing.assert_allclose(energies, ref["energy_eV"], rtol=0, atol=1e-10)
    for f, f_ref in zip(forces, ref["forces_eV_per_A"]):
        np.testing.assert_allclose(f, np.array(f_ref), rtol=0, atol=1e-10)


def test_a_minimal_config_gets_the_recipe():
    cfg = config_from_dict({"data": {"train": str(ACAC / "train.xyz"), "e0s": "isolated",
                                     "isolated_atoms": str(ACAC / "isolated_atoms.xyz")}})
    assert cfg.dtype == "float32"
    assert cfg.model.shifting == "none" and cfg.model.interaction_first == "plain"
    assert cfg.model.scaling == "rms_forces" and cfg.model.interaction == "residual"
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.clip_grad) == (0.02, 3, 10.0)
    assert cfg.optimiser.amsgrad and cfg.optimiser.weight_decay == 5.0e-7 and cfg.ema.use and cfg.ema.decay == 0.99
    assert (cfg.loss.energy_weight, cfg.loss.forces_weight) == (1.0, 100.0)
    st = cfg.stage_two
    assert (st.lr, st.energy_weight) == (0.002, 1000.0)
    assert st.first_epoch(28) == 26 and st.first_epoch(100) == 98 and st.first_epoch(2) == 1
    assert cfg.loss.resolved_stress_weight(True) == AUTO_STRESS_WEIGHT and cfg.loss.resolved_stress_weight(False) == 0.0


def test_configs_that_set_the_old_values_keep_them():
    old = {
        "data": {"train": str(ACAC / "train.xyz")}, "dtype": "float64", "model": {"shifting": "mean", "interaction_first": "residual"},
        "train": {"lr": 0.01, "batch_size": 10, "clip_grad": 100.0}, "optimiser": {"weight_decay": 0.0},
        "loss": {"stress_weight": 0.0}, "stage_two": {"start_epoch": None},
    }
    cfg = config_from_dict(old)
    assert cfg.dtype == "float64" and cfg.model.shifting == "mean" and cfg.model.interaction_first == "residual"
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.clip_grad, cfg.optimiser.weight_decay) == (0.01, 10, 100.0, 0.0)
    assert cfg.stage_two.first_epoch(cfg.train.max_epochs) is None
    assert cfg.loss.resolved_stress_weight(True) == 0.0
    assert config_from_dict({"data": {"train": str(ACAC / "train.xyz")}, "train": {"batch_size": 5}}).train.batch_size == 5
    explicit = config_from_dict({"data": {"train": str(ACAC / "train.xyz")}, "stage_two": {"start_epoch": 3}})
    assert explicit.stage_two.first_epoch(10) == 3


def test_minimal_config_trains_with_the_recipe(tmp_path):
    """Data paths and E0s only (plus a tiny architecture to keep it short): float32, no shift, a plain first
    layer, stage two over the last three epochs."""
    from mlip.train.run import train

    train_file = slice_xyz(ACAC / "train.xyz", tmp_path / "train.xyz", 12)
    cfg = config_from_dict({
        "data": {"train": str(train_file), "e0s": "isolated", "isolated_atoms": str(ACAC / "isolated_atoms.xyz"),
                 "valid_fraction": 0.25},
        "model": {"hidden_irreps": "4x0e + 4x1o", "max_ell": 1, "correlation": 2, "num_interactions": 2,
                  "radial_mlp": [8], "mlp_irreps": "4x0e"},
        "train": {"max_epochs": 4, "progress": False, "plot": False},
        "output_dir": str(tmp_path / "run"), "device": "cpu",
    })
    lines: list[str] = []
    run_dir = train(cfg, log=lines.append).parent
    info, _ = read_model_info(run_dir / "model.pt")
    assert info["dtype"] == "float32"
    assert info["hparams"]["interaction_first"] == "plain" and info["hparams"]["shift"] == [0.0]
    assert any(ln.startswith("stage two from epoch 2:") and "energy 1000" in ln for ln in lines), lines
    records = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in records] == pytest.approx([0.02, 0.002, 0.002, 0.002])
