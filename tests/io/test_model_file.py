"""Model files: round trip, no pickle on load, corrupt files, dtype/device options."""

from __future__ import annotations

import io
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nn"))

from graphs import make_batch  # noqa: E402
from small_models import small_model  # noqa: E402

from mlip.errors import ModelFileError  # noqa: E402
from mlip.io.model_file import load_model, read_model_info, save_model  # noqa: E402


def _batch(model, dtype=torch.float64):
    rng = np.random.default_rng(0)
    numbers = np.array(model.atomic_numbers * 2)
    cell = np.eye(3) * 4.0
    pos = rng.uniform(size=(len(numbers), 3)) @ cell
    return make_batch([(numbers, pos, cell, np.array([True] * 3))], model.r_max, heads=[len(model.heads) - 1], dtype=dtype)


@pytest.mark.parametrize("name", ["density_zbl_agnesi", "nonlinear_two_heads"])
def test_round_trip(tmp_path, name):
    model = small_model(name)
    path = tmp_path / "m.pt"
    save_model(model, path, metadata={"note": "test"})
    loaded = load_model(path)
    assert loaded.atomic_numbers == model.atomic_numbers and loaded.heads == model.heads
    assert loaded.r_max == model.r_max and loaded.hparams == model.hparams
    a = model(_batch(model), compute_stress=True)
    b = loaded(_batch(model), compute_stress=True)
    for key in ("energy", "forces", "stress", "node_energy"):
        assert torch.equal(a[key], b[key])
    info, _ = read_model_info(path)
    assert info["metadata"] == {"note": "test"} and info["dtype"] == "float64"
    assert info["atomic_numbers"] == model.atomic_numbers and info["heads"] == model.heads
    assert info["mlip_version"] and info["r_max"] == model.r_max
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temporary file


def test_deep_copied_model_saves_and_loads(tmp_path):
    """A deep copy (as EMA or the calculator make) gains e3nn fx constants; its file must still load."""
    import copy

    model = small_model("nonlinear_two_heads")
    twin = copy.deepcopy(model)
    twin(_batch(twin))  # run once, as a trained copy would have been
    save_model(twin, tmp_path / "copy.pt")
    loaded = load_model(tmp_path / "copy.pt")
    a, b = model(_batch(model)), loaded(_batch(model))
    assert torch.equal(a["energy"], b["energy"]) and torch.equal(a["forces"], b["forces"])
    # a key that is really missing is still refused
    _, state = read_model_info(tmp_path / "copy.pt")
    state.pop(next(iter(state)))
    torch.save({"mlip_model": json.dumps(read_model_info(tmp_path / "copy.pt")[0]), "state_dict": state}, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match="missing keys"):
        load_model(tmp_path / "bad.pt")


def test_files_with_zero_dim_constants_still_load(tmp_path):
    """Files written before the ZBL/Agnesi constants became ``[1]`` buffers hold them 0-dim."""
    model = small_model("density_zbl_agnesi")
    with torch.no_grad():
        model.pair.a_exp.fill_(0.31)  # not the default: the value must come from the file
        model.radial_embedding.transform.q.fill_(0.95)
    save_model(model, tmp_path / "m.pt")
    info, state = read_model_info(tmp_path / "m.pt")
    names = ["pair.a_exp", "pair.a_prefactor"] + [f"radial_embedding.transform.{n}" for n in "aqp"]
    for name in names:
        assert state[name].shape == (1,)
        state[name] = state[name].reshape(())
    torch.save({"mlip_model": json.dumps(info), "state_dict": state}, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt")
    assert float(loaded.pair.a_exp) == 0.31 and float(loaded.radial_embedding.transform.q) == 0.95
    a, b = model(_batch(model)), loaded(_batch(model))
    assert torch.equal(a["energy"], b["energy"]) and torch.equal(a["forces"], b["forces"])


def test_load_as_float32(tmp_path):
    model = small_model("residual")
    save_model(model, tmp_path / "m.pt")
    m32 = load_model(tmp_path / "m.pt", dtype=torch.float32, device="cpu")
    assert all(p.dtype == torch.float32 for p in m32.parameters())
    e32 = m32(_batch(model, torch.float32))["energy"]
    e64 = model(_batch(model))["energy"]
    torch.testing.assert_close(e32.double(), e64, rtol=1e-5, atol=1e-4)


class _Evil:
    def __reduce__(self):
        return (Path("/nonexistent-dir/should-never-exist").mkdir, ())


def test_loading_runs_no_pickle(tmp_path, monkeypatch):
    path = tmp_path / "evil.pt"
    torch.save({"mlip_model": "{}", "state_dict": {}, "payload": _Evil()}, path)
    called = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        called.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    with pytest.raises(ModelFileError, match="evil.pt"):
        load_model(path)
    assert called.get("weights_only") is True
    assert not Path("/nonexistent-dir/should-never-exist").exists()


def test_corrupt_and_foreign_files(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="bad.pt"):
        load_model(bad)
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ModelFileError, match="not an mlip model"):
        load_model(other)
    # truncated file
    model = small_model("residual")
    good = tmp_path / "good.pt"
    save_model(model, good)
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(ModelFileError):
        load_model(trunc)
    # tensors that do not match the hyper-parameters
    payload = torch.load(good, weights_only=True)
    info = json.loads(payload["mlip_model"])
    info["hparams"]["hidden_irreps"] = "8x0e + 8x1o"
    payload["mlip_model"] = json.dumps(info)
    mismatch = tmp_path / "mismatch.pt"
    torch.save(payload, mismatch)
    with pytest.raises(ModelFileError, match="do not match"):
        load_model(mismatch)
