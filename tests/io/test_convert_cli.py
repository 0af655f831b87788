"""mlip-convert from-mace through main(argv): the written model reproduces the mace-torch outputs."""

from __future__ import annotations

import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nn"))

from graphs import FIXTURES, atoms_structures, make_batch  # noqa: E402

from mlip.cli.convert import main  # noqa: E402
from mlip.errors import ConfigError  # noqa: E402
from mlip.io.model_file import load_model  # noqa: E402


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


def test_convert_mace_model_file_route(tmp_path, monkeypatch):
    """The .model route with a stand-in for mace-torch: config objects (callables, tensors, Irreps-like)."""
    import json
    import types

    from mlip.io.mace import convert_mace_model_file

    d = FIXTURES / "off_residual"
    h = json.loads((d / "hyperparameters.json").read_text())
    state = dict(np.load(d / "state_dict.npz"))

    class _Cls:  # mace passes classes; their str() names them
        def __init__(self, name):
            self.name = name

        def __str__(self):
            return f"<class 'mace.modules.blocks.{self.name}'>"

    cfg = dict(h)
    cfg.update(gate=torch.nn.functional.silu, atomic_numbers=torch.tensor(h["atomic_numbers"]),
               interaction_cls=_Cls(h["interaction_cls"]), interaction_cls_first=_Cls(h["interaction_cls_first"]),
               use_so3=False, radial_type="bessel", embedding_specs=None,
               readout_cls="<class 'mace.modules.blocks.NonLinearReadoutBlock'>")
    fake_model = types.SimpleNamespace(state_dict=lambda: {k: torch.as_tensor(v) for k, v in state.items()})
    mod = types.ModuleType("mace.tools.scripts_utils")
    mod.extract_config_mace_model = lambda m: cfg
    for name in ("mace", "mace.tools"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "mace.tools.scripts_utils", mod)
    monkeypatch.setattr(torch, "load", lambda *a, **k: fake_model)
    model = convert_mace_model_file(tmp_path / "x.model")
    monkeypatch.undo()
    atoms = ase.io.read(d / "structures.xyz", ":")
    res = model(make_batch(atoms_structures(atoms), model.r_max))
    np.testing.assert_allclose(res["energy"].detach().numpy(), np.load(d / "outputs.npz")["Default/energy"], rtol=0, atol=1e-8)
    cfg["use_so3"] = True
    with pytest.raises(ConfigError, match="use_so3"):
        from mlip.io.mace import hparams_from_mace

        hparams_from_mace(cfg, state)
