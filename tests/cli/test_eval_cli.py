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


def test_eval_as_mace_eval_configs(trained, tmp_path, capsys):
    """--info-prefix, --node-energies, --dtype, --batch-size (the mace_eval_configs options)."""
    model, data = trained
    ref, pred = tmp_path / "ref.xyz", tmp_path / "pred.xyz"
    assert eval_main(["--model", str(model), "--data", str(data), "--output", str(ref)]) == 0
    assert eval_main(["--model", str(model), "--data", str(data), "--output", str(pred), "--info-prefix", "MACE_",
                      "--node-energies", "--dtype", "float32", "--batch-size", "2"]) == 0
    ref_frames, frames = ase.io.read(ref, ":"), ase.io.read(pred, ":")
    assert all("MLIP_node_energy" not in a.arrays for a in ref_frames)  # default output unchanged
    for a, r in zip(frames, ref_frames):
        assert "MLIP_energy" not in a.info and a.arrays["MACE_node_energy"].shape == (len(a),)
        assert a.arrays["MACE_forces"].shape == (len(a), 3)
        # per-atom energies sum to the total; float32 agrees with the float64 evaluation to float32 precision
        assert a.arrays["MACE_node_energy"].sum() == pytest.approx(a.info["MACE_energy"], abs=1e-6 * len(a) * 1e3)
        assert a.info["MACE_energy"] == pytest.approx(r.info["MLIP_energy"], rel=1e-6)
        assert a.info["MACE_energy"] != r.info["MLIP_energy"]  # really evaluated in float32
    capsys.readouterr()
    for argv, message in (
        (["--node-energies"], "error: --node-energies: per-atom energies are written to --output"),
        (["--batch-size", "0"], "error: --batch-size: must be >= 1, got 0"),
        (["--output", str(pred), "--info-prefix", "a b"], "error: --info-prefix: 'a b' is not a usable key prefix"),
    ):
        assert eval_main(["--model", str(model), "--data", str(data), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(message) and "\n" not in err and "config key" not in err
