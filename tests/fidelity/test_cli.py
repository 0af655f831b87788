"""mlip-align and mlip-select command lines on small synthetic files (and the real acac pairs if present)."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from fidelity_synth import E0_SOURCE, E0_TARGET, isolated, make_frames

from mlip.cli.align import main as align_main
from mlip.cli.select import main as select_main

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"


def _write(path, frames):
    ase.io.write(path, frames, format="extxyz")
    return str(path)


def _pairs(frames, a):
    out = []
    for atoms in frames:
        t = atoms.copy()
        e_at = sum(E0_SOURCE[int(z)] for z in atoms.numbers) - atoms.get_potential_energy()
        t.calc = SinglePointCalculator(
            t, energy=sum(E0_TARGET[int(z)] for z in atoms.numbers) - a * e_at, forces=a * atoms.get_forces()
        )
        out.append(t)
    return out


@pytest.fixture
def files(tmp_path):
    data = make_frames(seed=5)
    src_pairs = make_frames(seed=6)
    return {
        "data": _write(tmp_path / "data.xyz", data),
        "src_iso": _write(tmp_path / "src_iso.xyz", isolated(E0_SOURCE)),
        "tgt_iso": _write(tmp_path / "tgt_iso.xyz", isolated(E0_TARGET)),
        "src_pairs": _write(tmp_path / "sp.xyz", src_pairs),
        "tgt_pairs": _write(tmp_path / "tp.xyz", _pairs(src_pairs, 0.8)),
        "frames": data,
        "dir": tmp_path,
    }


def test_align_tea_with_pairs_writes_xyz_and_json(files):
    out = files["dir"] / "out.xyz"
    rc = align_main(["tea", "--data", files["data"], "--source-atoms", files["src_iso"],
                     "--target-atoms", files["tgt_iso"], "--pairs", files["src_pairs"], files["tgt_pairs"],
                     "-o", str(out)])
    assert rc == 0
    record = json.loads(out.with_suffix(".json").read_text())
    for key in ("scale", "rmse_raw", "rmse_icea", "rmse_tea", "e0_source", "e0_target"):
        assert key in record
    assert record["scale"] == pytest.approx(0.8, rel=1e-10)
    assert record["rmse_tea"] == pytest.approx(0.0, abs=1e-8)
    aligned = ase.io.read(out, ":")
    assert len(aligned) == 9
    # hand formula for frame 0 (H2O): E'' = 2*(-13) + (-2040) - 0.8 * (2*(-10) + (-100) - E)
    e = files["frames"][0].get_potential_energy()
    assert aligned[0].get_potential_energy() == pytest.approx(-2066.0 - 0.8 * (-120.0 - e), abs=1e-8)
    np.testing.assert_allclose(aligned[0].get_forces(), 0.8 * files["frames"][0].get_forces(), atol=1e-7)


def test_align_tea_with_scale_has_null_rmse(files):
    out = files["dir"] / "icea.xyz"
    assert align_main(["tea", "--data", files["data"], "--source-atoms", files["src_iso"],
                       "--target-atoms", "H=-13,C=-1030,O=-2040", "--scale", "1", "-o", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["scale"] == 1.0 and record["rmse_raw"] is None and record["rmse_tea"] is None


def test_align_tea_bad_inputs_one_line_exit_2(files, capsys):
    frames = ase.io.read(files["tgt_pairs"], ":")
    frames[2].positions[0] += 0.5
    bad = _write(files["dir"] / "bad.xyz", frames)
    out = str(files["dir"] / "x.xyz")
    rc = align_main(["tea", "--data", files["data"], "--source-atoms", files["src_iso"],
                     "--target-atoms", files["tgt_iso"], "--pairs", files["src_pairs"], bad, "-o", out])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "frame 2" in err
    rc = align_main(["tea", "--data", files["data"], "--source-atoms", "H=-10,C=-50",
                     "--target-atoms", files["tgt_iso"], "--scale", "0.9", "-o", out])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "O" in err
    rc = align_main(["tea", "--data", str(files["dir"] / "missing.xyz"), "--source-atoms", files["src_iso"],
                     "--target-atoms", files["tgt_iso"], "--scale", "0.9", "-o", out])
    assert rc == 2 and capsys.readouterr().err.count("\n") == 1
    assert not Path(out).exists()


def test_align_tea_inverse_round_trip(files):
    fwd, back = files["dir"] / "fwd.xyz", files["dir"] / "back.xyz"
    common = ["--source-atoms", files["src_iso"], "--target-atoms", files["tgt_iso"], "--scale", "1.2"]
    assert align_main(["tea", "--data", files["data"], *common, "-o", str(fwd)]) == 0
    assert align_main(["tea", "--data", str(fwd), *common, "--inverse", "-o", str(back)]) == 0
    for a, b in zip(files["frames"], ase.io.read(back, ":")):
        assert b.get_potential_energy() == pytest.approx(a.get_potential_energy(), abs=1e-7)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-7)


def test_align_shifts_drop_energy_without_model(files):
    out = files["dir"] / "drop.xyz"
    assert align_main(["shifts", "--data", files["data"], "--drop-energy", "-o", str(out)]) == 0
    frames = ase.io.read(out, ":")
    assert all(f.info["config_energy_weight"] == 0.0 for f in frames)
    np.testing.assert_allclose(frames[1].get_forces(), files["frames"][1].get_forces(), atol=1e-7)


def test_select_cli_fps_and_dmin(files):
    out, png, idx = files["dir"] / "sub.xyz", files["dir"] / "p.png", files["dir"] / "idx.txt"
    assert select_main(["--data", files["data"], "-n", "4", "-o", str(out), "--plot", str(png),
                        "--indices", str(idx)]) == 0
    assert len(ase.io.read(out, ":")) == 4
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert len(idx.read_text().split()) == 4
    assert select_main(["--data", files["data"], "--dmin", "0.0", "-o", str(out)]) == 0
    assert len(ase.io.read(out, ":")) == 9  # distinct random geometries all kept at d_min = 0


def test_real_acac_pairs(tmp_path):
    acac, gfn2 = SHARED / "data" / "acac", SHARED / "data" / "acac_gfn2"
    if not (acac / "train_300K.xyz").is_file() or not (gfn2 / "train_300K.xyz").is_file():
        pytest.skip("../shared/data (acac, acac_gfn2) not present")
    out = tmp_path / "aligned.xyz"
    rc = align_main(["tea", "--data", f"{gfn2}/train_600K.xyz@:20", "--source-atoms", str(gfn2 / "isolated_atoms.xyz"),
                     "--target-atoms", str(acac / "isolated_atoms.xyz"),
                     "--pairs", f"{gfn2}/train_300K.xyz@:50", f"{acac}/train_300K.xyz@:50", "-o", str(out)])
    assert rc == 0
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["n_pairs"] == 50
    assert 0.5 < rec["scale"] < 1.5
    # free-atom energies differ by hundreds of eV per atom: raw >> ICEA >> TEA
    assert rec["rmse_raw"] > 1000 > rec["rmse_icea"] > rec["rmse_tea"]
