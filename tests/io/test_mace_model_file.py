"""mace-torch ``.model`` files read without mace-torch: parity with mace-torch's outputs, older versions, safety."""

from __future__ import annotations

import json
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mace_support import (
    OLD_FIXTURES,
    SHARED_MACE,
    SHARED_VARIANTS,
    assert_float32_parity,
    assert_float64_parity,
    decompress,
    max_diffs,
)

from mlip.errors import ModelFileError
from mlip.io.mace import convert_mace_model_file, load_model_or_mace
from mlip.io.mace_model import mace_config_from_file
from mlip.io.mace_pickle import (
    is_mace_model_file,
    module_state_dict,
    read_mace_model_file,
)

needs_shared = pytest.mark.skipif(not SHARED_MACE.is_dir(), reason=f"{SHARED_MACE} absent (shared reference data)")
_STRUCTURAL = ("atomic_numbers", "r_max", "num_bessel", "num_polynomial_cutoff", "max_ell", "interaction_cls",
               "interaction_cls_first", "num_interactions", "hidden_irreps", "MLP_irreps", "avg_num_neighbors",
               "correlation", "radial_MLP", "heads", "gate")


@pytest.fixture(autouse=True)
def _no_torch_load(monkeypatch):
    """The reader must never fall back to torch.load (which would unpickle classes)."""

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load called")

    monkeypatch.setattr(torch, "load", refuse)


@needs_shared
@pytest.mark.parametrize("variant", SHARED_VARIANTS)
def test_shared_float64_file_parity(variant, tmp_path):
    folder = SHARED_MACE / variant
    path = decompress(folder / "model.model.xz", tmp_path)
    h, state = mace_config_from_file(path)
    ref_h = json.loads((folder / "hyperparameters.json").read_text())
    assert {k: h[k] for k in _STRUCTURAL} == {k: ref_h[k] for k in _STRUCTURAL}
    assert h["pair_repulsion"] == ref_h.get("pair_repulsion", False)
    assert h["distance_transform"] == ref_h.get("distance_transform")
    with np.load(folder / "state_dict.npz") as ref:  # tensors rebuilt from the zip storages, bit for bit
        for key in state:
            assert np.array_equal(state[key], ref[key]), key
    model = convert_mace_model_file(path)
    assert next(model.parameters()).dtype == torch.float64
    assert_float64_parity(max_diffs(model, folder))


@needs_shared
@pytest.mark.parametrize("variant", SHARED_VARIANTS)
def test_shared_float32_file_parity(variant, tmp_path):
    folder = SHARED_MACE / variant
    path = decompress(folder / "model_float32.model.xz", tmp_path)
    model = convert_mace_model_file(path)  # keeps the file's dtype
    assert next(model.parameters()).dtype == torch.float32
    # float32 arithmetic on ~800 eV totals: forces within 64 float32 epsilons of the largest reference value
    assert_float32_parity(max_diffs(model, folder), ulps=64)
    # the file's float32 weights evaluated in float64: only the weights' rounding remains
    assert_float32_parity(max_diffs(convert_mace_model_file(path, dtype=torch.float64), folder), ulps=16)


def test_old_version_0_3_6_scaleshift_zbl_agnesi(tmp_path):
    """mace-torch 0.3.6 layout: no ``heads`` attribute, 1-D E0s, e3nn FullyConnectedNet radial MLPs."""
    folder = OLD_FIXTURES / "old_0.3.6"
    path = decompress(folder / "model.model.xz", tmp_path)
    h, _ = mace_config_from_file(path)
    assert h["heads"] == ["Default"] and h["pair_repulsion"] and h["distance_transform"] == "Agnesi"
    assert h["interaction_cls_first"] == "RealAgnosticInteractionBlock"
    assert_float64_parity(max_diffs(convert_mace_model_file(path), folder))


def test_old_version_0_3_10_plain_mace_two_heads_float32(tmp_path):
    """mace-torch 0.3.10: ``MACE`` (no scale/shift block), two heads, a float32 file."""
    folder = OLD_FIXTURES / "old_0.3.10"
    path = decompress(folder / "model.model.xz", tmp_path)
    model = convert_mace_model_file(path)
    assert model.heads == ["dft", "xtb"] and next(model.parameters()).dtype == torch.float32
    assert_float32_parity(max_diffs(model, folder))
    assert torch.equal(model.scale.double().cpu(), torch.ones(2, dtype=torch.float64))


def test_old_version_0_3_13_density_two_heads(tmp_path):
    """mace-torch 0.3.13: density + density-residual blocks, two heads with their own scale/shift."""
    folder = OLD_FIXTURES / "old_0.3.13"
    model = convert_mace_model_file(decompress(folder / "model.model.xz", tmp_path))
    assert model.heads == ["pbe", "r2scan"] and model.hparams.interaction_first == "density"
    assert_float64_parity(max_diffs(model, folder))


def test_tiny_0_3_16_file_without_shared(tmp_path):
    """A small mace-torch 0.3.16 file shipped with the tests (H/C/O, residual blocks)."""
    folder = OLD_FIXTURES / "tiny_0.3.16_hco"
    assert_float64_parity(max_diffs(convert_mace_model_file(decompress(folder / "model.model.xz", tmp_path)), folder))


def test_reader_never_imports_mace(tmp_path, monkeypatch):
    """A ``mace`` package on sys.path that would leave a marker when imported stays untouched."""
    marker = tmp_path / "imported"
    pkg = tmp_path / "fake" / "mace"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path / "fake"))
    for name in [m for m in sys.modules if m == "mace" or m.startswith("mace.")]:
        monkeypatch.delitem(sys.modules, name)
    path = decompress(OLD_FIXTURES / "old_0.3.6" / "model.model.xz", tmp_path)
    root = read_mace_model_file(path)
    assert root.qualname == "mace.modules.models.ScaleShiftMACE"
    assert "node_embedding.linear.weight" in module_state_dict(root)
    assert not marker.exists() and "mace" not in sys.modules
    assert is_mace_model_file(path)


def _crafted(tmp_path: Path, payload: bytes, name: str = "evil.model") -> Path:
    """A real torch zip archive (written by torch.save) whose data.pkl is replaced by ``payload``."""
    src, out = tmp_path / "plain.pt", tmp_path / name
    torch.save({"x": torch.zeros(3)}, src)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            data = payload if item.filename.endswith("/data.pkl") else zin.read(item)
            zout.writestr(item.filename, data)
    return out


class _SystemPayload:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


class _ExecPayload:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        import builtins

        return (builtins.exec, (self.code,))


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "unknown_global", "inside_model"])
def test_malicious_file_refused_payload_not_run(kind, tmp_path):
    marker = tmp_path / "pwned"
    if kind == "os.system":
        obj = _SystemPayload(f"touch {marker}")
    elif kind == "builtins.exec":
        obj = _ExecPayload(f"open({str(marker)!r}, 'w').close()")
    elif kind == "unknown_global":
        obj = {"model": Path("x")}  # pathlib.PosixPath: a global no mace file names
    else:  # a payload nested in an otherwise mace-looking dict of modules
        obj = {"mace.modules.models": [1, 2, _SystemPayload(f"touch {marker}")]}
    payload = pickle.dumps(obj, protocol=2)
    if kind in ("os.system", "builtins.exec"):  # the payload is live: plain unpickling runs it
        check = tmp_path / "check"
        pickle.loads(payload.replace(str(marker).encode(), str(check).encode()))
        assert check.exists()
    path = _crafted(tmp_path, payload)
    with pytest.raises(ModelFileError) as err:
        convert_mace_model_file(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "refused" in msg
    assert not marker.exists()
    # the same through the CLI and through fine-tuning's loader: exit 2, one line, nothing written or run
    from mlip.cli.convert import main

    assert main(["from-mace", str(path), "-o", str(tmp_path / "out.pt")]) == 2
    assert not (tmp_path / "out.pt").exists() and not marker.exists()
    with pytest.raises(ModelFileError, match="refused"):
        load_model_or_mace(path)
    assert not marker.exists()


def _module_pickle(qualname: str, children: dict[str, str]) -> bytes:
    """Protocol-2 opcodes of an ``nn.Module``-like object of class ``qualname`` (NEWOBJ + BUILD of a
    ``{"_modules": {...}}`` state) with children of the given class names; no class needs to exist."""

    def text(s: str) -> bytes:
        raw = s.encode()
        return b"X" + struct.pack("<I", len(raw)) + raw

    def obj(qual: str, kids: dict[str, str]) -> bytes:
        module, name = qual.rsplit(".", 1)
        body = b"c" + f"{module}\n{name}\n".encode() + b")\x81" + b"}" + text("_modules") + b"}"
        for key, child in kids.items():
            body += text(key) + obj(child, {}) + b"s"
        return body + b"sb"

    return b"\x80\x02" + obj(qualname, children) + b"."


def test_unknown_mace_construct_refused(tmp_path):
    """A mace class the importer does not know is refused, naming it (e.g. a newer interaction block)."""
    payload = _module_pickle("mace.modules.models.ScaleShiftMACE",
                             {"interactions": "mace.modules.blocks.RealAgnosticAttResidualInteractionBlock"})
    path = _crafted(tmp_path, payload)
    with pytest.raises(ModelFileError, match="RealAgnosticAttResidualInteractionBlock") as err:
        convert_mace_model_file(path)
    assert "\n" not in str(err.value)


def test_incomplete_model_names_the_file(tmp_path):
    """A known model class with parts missing: one line naming the file, no traceback-only KeyError."""
    path = _crafted(tmp_path, _module_pickle("mace.modules.models.ScaleShiftMACE", {}), name="empty.model")
    with pytest.raises(ModelFileError) as err:
        convert_mace_model_file(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_not_a_model_file(tmp_path):
    bad = tmp_path / "x.model"
    bad.write_text("not a zip")
    with pytest.raises(ModelFileError, match="not a torch zip archive"):
        convert_mace_model_file(bad)
    assert not is_mace_model_file(bad)
