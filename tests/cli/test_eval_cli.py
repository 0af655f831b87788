"""mlip-eval: error table, JSON keys (null where unlabelled), predictions under MLIP_* keys."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
from train_support import make_acac_small, tiny_config, write_config

from mlip.cli.eval import main as eval_main
from mlip.cli.train import main as train_main

KEYS = {"energy_rmse_per_atom", "energy_mae_per_atom", "forces_rmse", "forces_mae", "stress_rmse", "stress_mae",
        "n_configs"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("eval")
    acac_small = make_acac_small(tmp_path)
    run = tmp_path / "run"
    cfg = write_config(tiny_config(acac_small, run, train={"max_epochs": 1}), tmp_path / "c.yaml")
    assert train_main(["--config", str(cfg)]) == 0
    return run / "model.pt", acac_small["test"]


def test_eval_outputs(trained, tmp_path, capsys):
    model, data = trained
    capsys.readouterr()
    pred, js = tmp_path / "pred.xyz", tmp_path / "m.json"
    assert eval_main(["--model", str(model), "--data", str(data), "--output", str(pred), "--json", str(js),
                      "--batch-size", "3"]) == 0
    out = capsys.readouterr().out
    assert "F RMSE" in out and "E MAE" in out
    metrics = json.loads(js.read_text())
    assert KEYS <= set(metrics)
    assert metrics["n_configs"] == 8
    assert metrics["stress_rmse"] is None and metrics["stress_mae"] is None
    # recompute the errors independently from the predictions file and the reference labels
    frames = ase.io.read(pred, ":")
    assert len(frames) == 8
    de = np.array([(a.info["MLIP_energy"] - a.get_potential_energy()) / len(a) for a in frames])
    df = np.concatenate([(a.arrays["MLIP_forces"] - a.get_forces()).ravel() for a in frames])
    assert metrics["energy_rmse_per_atom"] == pytest.approx(np.sqrt(np.mean(de**2)), rel=1e-9)
    assert metrics["energy_mae_per_atom"] == pytest.approx(np.mean(np.abs(de)), rel=1e-9)
    assert metrics["forces_rmse"] == pytest.approx(np.sqrt(np.mean(df**2)), rel=1e-9)
    assert metrics["forces_mae"] == pytest.approx(np.mean(np.abs(df)), rel=1e-9)
    assert all("MLIP_stress" not in a.info for a in frames)


def test_eval_errors(trained, tmp_path, capsys):
    model, data = trained
    capsys.readouterr()
    assert eval_main(["--model", str(model), "--data", str(tmp_path / "none.xyz")]) == 2
    assert eval_main(["--model", str(model), "--data", str(data), "--head", "other"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "none.xyz" in err[0] and "other" in err[1]
