"""Tiny end-to-end runs on the bundled data: the validation error falls; run-directory layout; Si with stress."""

from __future__ import annotations

import json
import math
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
import yaml
from train_support import SI, TINY_MODEL, slice_xyz, tiny_config, write_config

from mlip.cli.train import main as train_main


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_validation_error_falls(acac_small, tmp_path, capsys):
    run = tmp_path / "run"
    cfg = tiny_config(acac_small, run, train={"max_epochs": 4, "plot": True})
    path = write_config(cfg, tmp_path / "c.yaml")
    assert train_main(["--config", str(path), "train.lr=0.02"]) == 0
    out = capsys.readouterr().out
    # layout of the run directory
    for name in ("model.pt", "metrics.jsonl", "config.yaml", "learning_curve.png", "final_metrics.json"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-00003.pt", "epoch-00004.pt"]
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["train"]["lr"] == 0.02  # the override is in the resolved config
    assert resolved["model"]["hidden_irreps"] == TINY_MODEL["hidden_irreps"]
    # coverage table and the per-evaluation error table were printed
    assert "label coverage" in out and "F RMSE" in out and "test" in out
    recs = _records(run)
    assert [r["epoch"] for r in recs] == [1, 2, 3, 4]
    first, last = recs[0]["valid"]["Default"]["all"], recs[-1]["valid"]["Default"]["all"]
    assert last["forces_rmse"] < 0.97 * first["forces_rmse"]
    assert recs[-1]["valid_loss"] < recs[0]["valid_loss"]
    assert first["stress_rmse"] is None  # acac carries no stress
    # the saved model is the EMA model of the best epoch and reproduces the logged validation error
    final = json.loads((run / "final_metrics.json").read_text())
    best = min(recs, key=lambda r: r["valid_loss"])
    assert final["best_epoch"] == best["epoch"]
    assert final["valid"]["Default"]["all"]["forces_rmse"] == pytest.approx(
        best["valid"]["Default"]["all"]["forces_rmse"], rel=1e-10
    )
    # the checkpoints load without unpickling classes
    ckpt = torch.load(run / "checkpoints" / "epoch-00004.pt", weights_only=True)
    assert ckpt["epoch"] == 4 and isinstance(ckpt["rng"]["torch"], torch.Tensor)


def test_short_stress_training_on_si(tmp_path):
    if not (SI / "train.xyz").is_file():
        pytest.skip("bundled data/si missing")
    files = {
        "train": slice_xyz(SI / "train.xyz", tmp_path / "si_train.xyz", 12),
        "test": slice_xyz(SI / "test.xyz", tmp_path / "si_test.xyz", 3),
    }
    run = tmp_path / "si"
    cfg = tiny_config({**files, "isolated": files["train"]}, run,
                      train={"max_epochs": 3, "batch_size": 3, "lr": 0.01, "max_atoms_per_batch": 100})
    cfg["data"].update({"e0s": "fit", "valid_fraction": 0.25})
    cfg["data"].pop("isolated_atoms")
    cfg["model"].update({"r_max": 3.5})
    cfg["loss"].update({"type": "mse", "energy_weight": 1.0, "forces_weight": 10.0, "stress_weight": 1000.0})
    assert train_main(["--config", str(write_config(cfg, tmp_path / "si.yaml"))]) == 0
    recs = _records(run)
    stress = [r["valid"]["Default"]["all"]["stress_rmse"] for r in recs]
    assert all(s is not None and math.isfinite(s) for s in stress)
    final = json.loads((run / "final_metrics.json").read_text())
    assert final["test"]["Default"]["all"]["stress_rmse"] is not None
    assert recs[-1]["train_loss"] < recs[0]["train_loss"]
    # several config types: the tables are also split per config_type
    train_groups = final["train"]["Default"]
    assert "all" in train_groups and len(train_groups) > 2
    assert sum(g["n_configs"] for k, g in train_groups.items() if k != "all") == train_groups["all"]["n_configs"]
    # mlip-eval on periodic frames writes stress predictions and stress errors
    from mlip.cli.eval import main as eval_main

    pred, js = tmp_path / "pred.xyz", tmp_path / "m.json"
    assert eval_main(["--model", str(run / "model.pt"), "--data", str(files["test"]), "--output", str(pred),
                      "--json", str(js)]) == 0
    metrics = json.loads(js.read_text())
    frames = ase.io.read(pred, ":")
    ds = np.concatenate([a.info["MLIP_stress"] - a.get_stress(voigt=False).ravel() for a in frames])
    assert metrics["stress_rmse"] == pytest.approx(np.sqrt(np.mean(ds**2)), rel=1e-9)
    assert metrics["n_configs"] == 3


@pytest.mark.filterwarnings("ignore:E0s of head")
def test_two_heads_with_head_weight(acac_small, tmp_path):
    run = tmp_path / "mh"
    cfg = tiny_config(acac_small, run, train={"max_epochs": 1})
    data = cfg["data"]
    cfg["data"] = {
        "valid_fraction": 0.25,
        "heads": {
            "dft": {"train": data["train"], "test": data["test"], "e0s": "isolated",
                    "isolated_atoms": data["isolated_atoms"]},
            "low": {"train": data["train"], "e0s": "fit", "weight": 0.5},
        },
    }
    assert train_main(["--config", str(write_config(cfg, tmp_path / "mh.yaml"))]) == 0
    from mlip.io.model_file import load_model

    model = load_model(run / "model.pt")
    assert list(model.heads) == ["dft", "low"]
    final = json.loads((run / "final_metrics.json").read_text())
    assert set(final["valid"]) == {"dft", "low", "all"}
    assert final["valid"]["all"]["all"]["n_configs"] == 10 and set(final["test"]) == {"dft"}
    # E0s differ between the heads: isolated atoms for one, a least-squares fit for the other
    e0 = model.atomic_energies
    assert not torch.allclose(e0[0], e0[1])
