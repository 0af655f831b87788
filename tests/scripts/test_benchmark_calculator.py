"""The pure parts of scripts/benchmark_calculator.py (no mace-torch, no model): the rattle sequence, the
straight-line extrapolation to the largest Si cell, the tables and how worker processes are started."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))
import benchmark_calculator as bc  # noqa: E402  (scripts are not a package)
import benchmark_calculator_worker as worker  # noqa: E402
from benchmark_inference_common import default_mace_python  # noqa: E402


# ------------------------------------------------------------------------------------------ rattles
def test_rattles_are_deterministic_and_redrawn_every_call():
    a, b = worker.rattles(15, seed=0, sigma=0.02), worker.rattles(15, seed=0, sigma=0.02)
    first = [next(a) for _ in range(7)]
    for x in first:
        np.testing.assert_array_equal(x, next(b))
        assert x.shape == (15, 3)
    assert not np.array_equal(first[0], first[1])  # a new draw before every call
    assert not np.array_equal(first[0], next(worker.rattles(15, seed=1, sigma=0.02)))
    big = next(worker.rattles(20000, seed=0, sigma=0.02))
    assert abs(big.std() - 0.02) < 1e-3 and abs(big.mean()) < 1e-3


def test_both_sides_get_the_same_rattle_settings(tmp_path, monkeypatch):
    """Every worker, mace-torch's or mlip's, gets the same seed and sigma, one thread and its own process."""
    calls = []

    def fake_run(cmd, capture_output, text, env, timeout):
        spec = json.loads(Path(cmd[-1]).read_text())
        calls.append((cmd[0], spec, env))
        Path(spec["out"]).write_text(json.dumps({"versions": {"torch": "x"}}))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(bc.subprocess, "run", fake_run)
    args = bc.parse_args(["--mace-python", sys.executable, "--seed", "7", "--rattle", "0.03"])
    run = bc.Runner(args, tmp_path)
    for fw in run.frameworks():
        run(fw, "speed", system="acac", dtype="float64", mode="eager")
    assert [c[1]["framework"] for c in calls] == ["mace", "mlip"]
    assert {(c[1]["seed"], c[1]["sigma"], c[1]["threads"]) for c in calls} == {(7, 0.03, 1)}
    assert all(c[2]["OMP_NUM_THREADS"] == "1" for c in calls)
    assert calls[0][1]["out"] != calls[1][1]["out"]
    assert calls[0][2]["TORCHINDUCTOR_CACHE_DIR"] != calls[1][2]["TORCHINDUCTOR_CACHE_DIR"]  # fresh caches


def test_the_mace_venv_draws_the_same_rattles():
    """The mace-torch venv's numpy gives the same sequence (only numpy runs there, not mace-torch)."""
    python = Path(default_mace_python())
    if not python.exists():
        pytest.skip(f"no mace-torch venv at {python}")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import benchmark_calculator_worker as w; "
            "g = w.rattles(512, 0, 0.02); print(repr(sum(float(next(g).sum()) for _ in range(7))))")
    proc = subprocess.run([str(python), "-c", code, str(SCRIPTS)], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    g = worker.rattles(512, 0, 0.02)
    assert float(proc.stdout.strip()) == sum(float(next(g).sum()) for _ in range(7))


def test_si_system_names():
    assert worker.si_cells("si512") == 4 and worker.si_cells("si4096") == 8 and worker.si_cells("si1728") == 6
    assert worker.si_cells("acac") is None
    with pytest.raises(SystemExit):
        worker.si_cells("si500")
    assert [bc.si_atoms(n) for n in (4, 6, 8)] == [512, 1728, 4096]


# ------------------------------------------------------------------------------------------ the fit
def test_linear_fit_recovers_a_line():
    a, b = bc.linear_fit([(512, 500 + 0.5 * 512), (1728, 500 + 0.5 * 1728), (4096, 500 + 0.5 * 4096)])
    assert a == pytest.approx(500) and b == pytest.approx(0.5)
    with pytest.raises(ValueError):
        bc.linear_fit([(512, 1.0), (512, 2.0)])


def test_largest_cell_picks_the_right_n():
    # 500 MiB + 1 MiB/atom in 16 GiB: (16384 - 500) / 8 = 1985.5 -> n^3 <= 1985.5 -> n = 12 (13^3 = 2197)
    assert bc.largest_cell(500.0, 1.0, 16 * 1024) == 12
    # exactly on the budget at n = 10 (8000 atoms) still fits; a byte less does not
    assert bc.largest_cell(1000.0, 2.0, 1000.0 + 2.0 * 8000) == 10
    assert bc.largest_cell(1000.0, 2.0, 1000.0 + 2.0 * 8000 - 1e-6) == 9
    assert bc.largest_cell(20000.0, 1.0, 16 * 1024) == 0  # the constant part alone is over budget
    with pytest.raises(ValueError):
        bc.largest_cell(100.0, 0.0, 1000.0)


def test_predicted_rss_guards_the_next_size():
    assert bc.predicted_rss([(512, 1000.0)], 4096) == pytest.approx(8000.0)  # in proportion from one point
    assert bc.predicted_rss([(512, 756.0), (1728, 1364.0)], 4096) == pytest.approx(500 + 0.5 * 4096)


# ------------------------------------------------------------------------------------------ tables
def test_speed_table():
    rows = [
        {"system": "si512", "dtype": "float64", "max_df": 2.5e-9,
         "mace": {"eager": {"ms": 200.0}, "compiled": {"ms": 100.0, "warmup_s": 95.4}},
         "mlip": {"eager": {"ms": 100.0}, "compiled": {"ms": 40.0, "warmup_s": 30.2}}},
        {"system": "acac", "dtype": "float32", "max_df": None,
         "mlip": {"eager": {"ms": 50.0}, "compiled": {"error": "timed out"}}},
    ]
    lines = bc.speed_table(rows).splitlines()
    assert lines[0].count("|") == lines[1].count("|") == 11
    assert "mace-torch eager ms" in lines[0] and "compiled speed-up" in lines[0] and "max dF" in lines[0]
    assert lines[2] == "| si512 | float64 | 200.0 | 100.0 | 2.00x | 100.0 | 40.0 | 2.50x | 95 / 30 | 2.5e-09 |"
    assert lines[3] == "| acac | float32 |  | 50.0 |  |  |  |  | - / - |  |"


def test_memory_largest_and_md_tables():
    memory = bc.memory_table([
        {"framework": "mace", "system": "si4096", "atoms": 4096, "dtype": "float64", "rss_before_mib": 515.0,
         "peak_rss_mib": 9000.0, "peak_rss_all": [8900.0, 9000.0, 9100.0], "call_s": 40.0},
        {"framework": "mlip", "system": "si4096", "dtype": "float32", "error": "killed"}])
    assert "| mace-torch | si4096 | 4096 | float64 | 515 | 9000 (8900-9100) | 40.0 |" in memory
    assert "n/a: killed" in memory
    largest = bc.largest_table([
        {"framework": "mlip", "dtype": "float64", "measured": [(4, 756.0), (6, 1364.0)], "a": 500.0, "b": 0.5,
         "n": 12},
        {"framework": "mace", "dtype": "float64", "measured": [(4, 2000.0)], "note": "6x6x6: killed"}], 16)
    assert "Linear extrapolation" in largest
    assert "| mlip | float64 | 4: 756, 6: 1364 | 500 | 512.0 | 12 | 13824 | 7412 |" in largest
    assert "n/a: 6x6x6: killed" in largest
    md = bc.md_table([{"system": "acac", "dtype": "float64", "mode": "eager", "steps": 10, "ms_step": 50.0,
                       "ms_model": 48.0, "ms_batch": 0.5, "outside_pct": 4.0},
                      {"system": "si512", "dtype": "float32", "mode": "compiled", "steps": 10, "ms_step": 50.0,
                       "ms_model": 40.0, "ms_batch": 0.5, "outside_pct": 20.0, "calculator_pct": 6.0}])
    assert "| 4.0 | yes | 4.0 |" in md and "| 6.0 | no | 20.0 |" in md


def test_header_names_date_commit_machine_and_versions():
    text = bc.header({"mlip": {"torch": "2.13.0", "mlip": "0.1.0"}}, "model mp64")
    for word in ("date (UTC)", "commit:", "machine:", "torch 2.13.0", "OMP_NUM_THREADS=1", "model mp64"):
        assert word in text


def test_default_mace_python():
    path = default_mace_python()
    repo = str(SCRIPTS.parent / ".venv-mace" / "bin" / "python")
    assert path == repo or (path == "/tmp/macevenv/bin/python" and not Path(repo).exists())
