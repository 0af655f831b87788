"""h5py and cuEquivariance are extras (ondisk, cueq): without them the features that need them stop with one
line saying what to install; everything else (train, eval: what make demo runs) works."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def without(monkeypatch):
    def hide(*names: str) -> None:
        for name in names:
            for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
                monkeypatch.delitem(sys.modules, key)
            monkeypatch.setitem(sys.modules, name, None)  # "import name" now raises ImportError
    return hide


def test_h5py_missing(tmp_path, capsys, without):
    from mlip.cli.preprocess import main

    without("h5py")
    assert main(["--data", str(REPO / "data" / "si" / "train.xyz"), "-o", str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: on-disk (.h5) datasets need h5py, which is not installed: pip install -e '.[ondisk]' "
                   "in the mlip clone (or pip install h5py)")
    assert not (tmp_path / "x.h5").exists()


def test_cueq_missing_and_training_without_both(tmp_path, capsys, without, monkeypatch):
    from mlip.cli.train import main

    shutil.copytree(REPO / "configs", tmp_path / "configs")
    shutil.copytree(REPO / "data" / "si", tmp_path / "data" / "si")
    monkeypatch.chdir(tmp_path)
    without("h5py", "cuequivariance", "cuequivariance_torch")
    tiny = ["model.hidden_irreps=4x0e+4x1o", "model.max_ell=1", "model.correlation=1", "model.num_interactions=1",
            "model.radial_mlp=[8]", "model.num_bessel=4", "model.mlp_irreps=4x0e", "train.max_epochs=1",
            "train.progress=false", "train.plot=false"]
    assert main(["--config", "configs/si.yaml", *tiny, "output_dir=a"]) == 0  # plain training needs neither
    capsys.readouterr()
    assert main(["--config", "configs/si.yaml", *tiny, "model.backend=cueq", "output_dir=b"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model backend 'cueq' needs cuEquivariance, which is not installed: "
                          "pip install -e '.[cueq]' in the mlip clone") and "\n" not in err
