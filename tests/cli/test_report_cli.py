"""``mlip-report``: the whole page for a periodic crystal and for a molecule, on a tiny model; one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integrations"))

from integ_support import molecule, tiny_model  # noqa: E402

from mlip.cli.report import main  # noqa: E402


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    from mlip.io.model_file import save_model

    path = tmp_path_factory.mktemp("report") / "model.pt"
    save_model(tiny_model(), path)
    return path


@pytest.mark.slow
def test_periodic_report(model_file, tmp_path, capsys):
    structure = tmp_path / "si.xyz"
    ase.io.write(structure, bulk("Si", "diamond", a=5.43))
    strained = []
    for i, eps in enumerate((-0.01, 0.01)):
        atoms = bulk("Si", "diamond", a=5.43 * (1 + eps))
        atoms.info.update(config_type="Elastic", stress=np.full(6, 0.01 * i))
        strained.append(atoms)
    data = tmp_path / "data.xyz"
    ase.io.write(data, strained)
    out = tmp_path / "report"
    assert main(["--model", str(model_file), "--structure", str(structure), "--data", str(data), "-o", str(out),
                 "--supercell", "1", "1", "1", "--md-steps", "5"]) == 0
    page = (out / "index.html").read_text()
    for title in ("Equation of state", "Elastic tensor", "Phonons (phonopy)", "Short MD (NVT)"):
        assert title in page
    for image in ("eos.png", "phonons.png", "md.png"):
        assert (out / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "strained frames of --data" in page and "Took" in page and "float64" in page
    assert "finite displacements: largest frequency difference" in page
    assert "mlip-report: phonons done in" in capsys.readouterr().out


def test_molecule_report_and_errors(model_file, tmp_path, capsys):
    structure = tmp_path / "cluster.xyz"
    ase.io.write(structure, molecule())
    out = tmp_path / "mol"
    assert main(["--model", str(model_file), "--structure", str(structure), "-o", str(out),
                 "--only", "vibrations,md", "--md-steps", "5"]) == 0
    page = (out / "index.html").read_text()
    assert "Vibrational frequencies" in page and "Short MD (NVT)" in page and "Equation of state" not in page
    capsys.readouterr()
    assert main(["--model", str(model_file), "--structure", str(structure), "-o", str(out), "--only", "phonons"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --only phonons: not a section for a molecule") and "\n" not in err
    assert main(["--model", str(model_file), "--structure", str(tmp_path / "none.xyz"), "-o", str(out)]) == 2
    assert "file not found" in capsys.readouterr().err
