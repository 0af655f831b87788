"""mlip-data summary: output, and bad input -> one line, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

from data_testlib import DATA
from mlip.cli.data import main


def test_summary_output(capsys):
    assert main(["summary", str(DATA / "acac" / "train.xyz"), str(DATA / "acac" / "isolated_atoms.xyz")]) == 0
    out = capsys.readouterr().out
    assert "frames: 100" in out and "H (800), C (500), O (200)" in out
    assert "atoms/frame: min 15, mean 15.0, max 15" in out
    assert "E0 from isolated atoms (eV): H -13.568422, C -1026.853900, O -2037.796869" in out


def test_summary_wrong_key_shows_zero_coverage(capsys):
    assert main(["summary", str(DATA / "si" / "train.xyz"), "--energy-key", "REF_energy"]) == 0
    out = capsys.readouterr().out
    row = [line for line in out.splitlines() if line.startswith(str(DATA / "si" / "train.xyz")) and "Default" in line]
    assert row[0].split()[2:] == ["12", "0", "12", "12", "0"]
    assert "calculator: energy, forces, stress" in out


def test_bad_input_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.xyz"
    bad.write_text('2\nProperties=species:S:1:pos:R:3 energy=nan pbc="F F F"\nH 0 0 0\nH 0 0 1\n')
    assert main(["summary", str(bad)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert str(bad) in lines[0] and "frame 0" in lines[0] and "key 'energy'" in lines[0]
    assert "Traceback" not in captured.err


def test_bad_input_subprocess(tmp_path):
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    result = subprocess.run([sys.executable, "-m", "mlip.cli.data", "summary", str(empty)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "empty file" in result.stderr
    assert "Traceback" not in result.stderr
