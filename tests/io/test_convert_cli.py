"""mlip-convert from-mace through main(argv): the written model reproduces the mace-torch outputs."""

from __future__ import annotations

import sys
from pathlib import Path

import ase.io
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nn"))

from graphs import FIXTURES, atoms_structures, make_batch

from mlip.cli.convert import main
from mlip.io.model_file import load_model


def test_convert_cli_parity(tmp_path, capsys):
    d = FIXTURES / "mh_nonlinear_two_heads"
    out = tmp_path / "model.pt"
    rc = main(["from-mace", "--hyperparameters", str(d / "hyperparameters.json"), "--state-dict", str(d / "state_dict.npz"), "-o", str(out)])
    assert rc == 0 and out.is_file()
    model = load_model(out)
    assert model.heads == ["dft", "xtb"] and model.atomic_numbers == [1, 6, 8]
    atoms = ase.io.read(d / "structures.xyz", ":")
    ref = np.load(d / "outputs.npz")
    for h, head in enumerate(model.heads):
        b = make_batch(atoms_structures(atoms), model.r_max, heads=[h] * len(atoms))
        res = model(b, compute_forces=True, compute_stress=True)
        np.testing.assert_allclose(res["energy"].detach().numpy(), ref[f"{head}/energy"], rtol=0, atol=1e-8)
        np.testing.assert_allclose(res["forces"][: len(atoms[0])].detach().numpy(), ref[f"{head}/forces/0"], rtol=0, atol=1e-8)


def test_convert_cli_errors(tmp_path, capsys):
    d = FIXTURES / "off_residual"
    assert main(["from-mace", "--hyperparameters", str(d / "hyperparameters.json"), "-o", str(tmp_path / "x.pt")]) == 2
    assert "--state-dict" in capsys.readouterr().err
    assert main(["from-mace", "--hyperparameters", str(tmp_path / "nope.json"), "--state-dict", str(d / "state_dict.npz"), "-o", str(tmp_path / "x.pt")]) == 2
    assert "nope.json" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_convert_float32(tmp_path):
    d = FIXTURES / "off_residual"
    out = tmp_path / "m.pt"
    args = ["from-mace", "--hyperparameters", str(d / "hyperparameters.json"), "--state-dict", str(d / "state_dict.npz")]
    assert main(args + ["-o", str(out), "--dtype", "float32"]) == 0
    model = load_model(out)
    assert next(model.parameters()).dtype == torch.float32
    atoms = ase.io.read(d / "structures.xyz", ":")
    res = model(make_batch(atoms_structures(atoms), model.r_max, dtype=torch.float32))
    ref = np.load(d / "outputs.npz")
    np.testing.assert_allclose(res["energy"].detach().double().numpy(), ref["Default/energy"], rtol=1e-6, atol=0)


def test_convert_cli_model_file(tmp_path, capsys):
    """``mlip-convert from-mace X.model -o model.pt`` with a real mace-torch 0.3.6 file (no mace-torch here)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from mace_support import OLD_FIXTURES, assert_float64_parity, decompress, max_diffs

    folder = OLD_FIXTURES / "old_0.3.6"
    src = decompress(folder / "model.model.xz", tmp_path)
    out = tmp_path / "model.pt"
    assert main(["from-mace", str(src), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    model = load_model(out)
    assert next(model.parameters()).dtype == torch.float64 and model.atomic_numbers == [1, 8]
    assert_float64_parity(max_diffs(model, folder))
    assert main(["from-mace", "--model", str(src), "-o", str(tmp_path / "b.pt"), "--dtype", "float32"]) == 0
    assert next(load_model(tmp_path / "b.pt").parameters()).dtype == torch.float32


def test_convert_cli_model_file_errors(tmp_path, capsys):
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"PK\x03\x04 truncated")
    assert main(["from-mace", str(bad), "-o", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.model" in err and "Traceback" not in err
    d = FIXTURES / "off_residual"
    args = ["from-mace", str(bad), "--state-dict", str(d / "state_dict.npz"), "-o", str(tmp_path / "x.pt")]
    assert main(args) == 2
    assert "not both" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
