"""mlip-train messages name what the user typed (label keys, files, config keys), exit 2, one line, no traceback;
the E0 warnings go through the run's log."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlip.cli.train import main

REPO = Path(__file__).resolve().parents[2]
TINY = ["model.hidden_irreps=4x0e+4x1o", "model.max_ell=1", "model.correlation=1", "model.num_interactions=1",
        "model.radial_mlp=[8]", "model.num_bessel=4", "model.mlp_irreps=4x0e", "train.progress=false",
        "train.plot=false", "train.max_epochs=1", "output_dir=run"]


@pytest.fixture
def clone(tmp_path, monkeypatch) -> Path:
    if not (REPO / "data" / "si" / "train.xyz").is_file():
        pytest.skip("bundled data missing")
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    shutil.copytree(REPO / "data", tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _error(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and "Traceback" not in err and err.startswith("error: ")
    return err


@pytest.mark.parametrize("override, typed, prop", [
    (["data.energy_key=enrgy"], "enrgy", "energy"),
    (["data.forces_key=frc"], "frc", "forces"),
    (["data.stress_key=strss"], "strss", "stress"),
    (["data.virials_key=vir", "loss.virials_weight=1"], "vir", "virials"),
])
def test_label_key_errors_name_the_typed_key_and_file(clone, capsys, override, typed, prop):
    assert main(["--config", "configs/si.yaml", *TINY, *override]) == 2
    err = _error(capsys)
    assert err.startswith(f"error: data/si/train.xyz: key '{typed}': no frame of split 'train'")
    assert f"carries the {prop} label under '{typed}'" in err


def test_range_error_before_any_data_and_no_stray_files(clone, capsys):
    assert main(["--config", "configs/si.yaml", "model.r_max=-1", "output_dir=run"]) == 2
    assert _error(capsys) == "error: config key 'model.r_max': must be > 0.0, got -1.0"
    assert not (clone / "run").exists()  # nothing written, not even config.yaml


def test_single_composition_fit_warns_in_the_log(clone, capsys):
    # acac: every frame is C5H8O2, so a least-squares fit cannot separate H, C and O
    assert main(["--config", "configs/acac.yaml", "data.e0s=fit", "data.isolated_atoms=null", *TINY]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning: data.e0s")]
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: data.e0s: 'fit' on head 'Default': the training compositions "
                                  "determine only 1 of 3 E0s")
    assert "isolated_atoms" in warnings[0]


def test_missing_isolated_element_names_both_files(clone, capsys):
    lines = (clone / "data" / "acac" / "isolated_atoms.xyz").read_text().splitlines(keepends=True)
    (clone / "iso_HC.xyz").write_text("".join(lines[:6]))  # H and C only (3 lines per 1-atom frame)
    assert main(["--config", "configs/acac.yaml", "data.e0s=iso_HC.xyz", "data.isolated_atoms=null", *TINY]) == 2
    err = _error(capsys)
    assert err.startswith("error: E0s of head 'Default': no energy for O (found in data/acac/train.xyz")
    assert "in iso_HC.xyz" in err
