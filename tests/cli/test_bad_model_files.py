"""Corrupt or wrong model files give one line saying what the file is and what to pass instead (exit 2)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data" / "acac" / "test.xyz"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    from mlip.io.model_file import save_model
    from mlip.nn.hparams import ModelHyperparameters
    from mlip.nn.model import build_model

    hp = ModelHyperparameters(atomic_numbers=[1, 6, 8], atomic_energies=[[-1.0, -2.0, -3.0]], hidden_irreps="4x0e",
                              max_ell=1, correlation=1, num_interactions=1, radial_mlp=[4], num_bessel=4)
    path = tmp_path_factory.mktemp("m") / "model.pt"
    save_model(build_model(hp), path)
    return path


def _eval_error(capsys, model: Path) -> str:
    from mlip.cli.eval import main

    assert main(["--model", str(model), "--data", str(DATA), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_bad_model_files(tmp_path, capsys, model_file):
    if not DATA.is_file():
        pytest.skip("bundled data/acac missing")
    good = model_file.read_bytes()
    cases = {}
    (tmp_path / "empty.pt").write_bytes(b"")
    cases["empty.pt"] = "an empty file (0 bytes"
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    cases["truncated.pt"] = "a truncated or damaged PyTorch file"
    shutil.copy(DATA, tmp_path / "frames.pt")
    cases["frames.pt"] = "a structure file (XYZ: first line is an atom count), not a model; pass it as --data"
    torch.save({"format": 1, "epoch": 3, "model": {}, "optimizer": {}, "rng": {}}, tmp_path / "ckpt.pt")
    cases["ckpt.pt"] = "a training checkpoint (epoch 3), not an mlip model file; pass the model.pt"
    torch.save({"w": torch.zeros(2)}, tmp_path / "state.pt")
    cases["state.pt"] = "a bare state dict (1 tensors, no hyper-parameters)"
    with open(tmp_path / "legacy.pt", "wb") as fh:
        pickle.dump({"a": 1}, fh, protocol=2)
    cases["legacy.pt"] = "a pickle / legacy PyTorch file"
    (tmp_path / "run").mkdir()
    cases["run"] = "a directory, not a model file"
    for name, expected in cases.items():
        err = _eval_error(capsys, tmp_path / name)
        assert err.startswith(f"error: {tmp_path / name}: {expected}"), (name, err)
