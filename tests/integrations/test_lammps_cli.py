"""``mlip-lammps``: a real LAMMPS input run through the CLI, and its one-line errors (exit 2)."""

from __future__ import annotations

import numpy as np
import pytest
from integ_support import ELEMENTS, lammps_or_skip, lammps_setup, molecule, tiny_model

from mlip.calculator import MLIPCalculator
from mlip.cli.lammps import main


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from mlip.io.model_file import save_model

    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(tiny_model(), path)
    return path


def _thermo_rows(log_text: str) -> list[list[float]]:
    rows, inside = [], False
    for line in log_text.splitlines():
        words = line.split()
        if words[:2] == ["Step", "PotEng"]:
            inside = True
            continue
        if inside and words and words[0].isdigit():
            rows.append([float(w) for w in words])
        elif inside:
            inside = False
    return rows


def test_cli_runs_input(model_file, tmp_path):
    lammps_or_skip()
    atoms = molecule()
    script = tmp_path / "in.lammps"
    script.write_text(
        lammps_setup(atoms, periodic=False)
        + "velocity all create 100 1234 mom yes rot yes\n"
        + "fix nve all nve\nthermo_style custom step pe etotal\nthermo 5\nrun 10\n"
    )
    log = tmp_path / "run.log"
    assert main(["--model", str(model_file), "--elements", *ELEMENTS, "-in", str(script),
                 "-log", str(log), "-screen", "none"]) == 0
    rows = _thermo_rows(log.read_text())
    assert [int(r[0]) for r in rows] == [0, 5, 10]
    reference = atoms.copy()
    reference.calc = MLIPCalculator(str(model_file))
    assert abs(rows[0][1] - reference.get_potential_energy()) < 1e-6  # thermo prints ~8 significant digits
    energies = np.array([r[2] for r in rows])
    assert np.abs(energies - energies[0]).max() < 1e-3


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.replace("fix mlip all external pf/callback 1 1\n", "") + "run 1\n", "line 15: 'run' before 'fix mlip"),
        (lambda s: s + "label loop\n", "'label' is not supported"),
        (lambda s: s + "pair_style nonsense\n", "LAMMPS: ERROR: Unrecognized pair style"),
    ],
)
def test_cli_errors_one_line(model_file, tmp_path, capsys, edit, message):
    lammps_or_skip()
    script = tmp_path / "in.lammps"
    script.write_text(edit(lammps_setup(molecule(), periodic=False)))
    code = main(["--model", str(model_file), "--elements", *ELEMENTS, "-in", str(script), "-log", "none", "-screen", "none"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and str(script) in err and len(err.splitlines()) == 1, err


def test_cli_missing_files(model_file, tmp_path, capsys):
    assert main(["--model", str(tmp_path / "nope.pt"), "--elements", "Si", "-in", "x.in"]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["--model", str(model_file), "--elements", "Si", "-in", str(tmp_path / "x.in")]) == 2
    assert "no such LAMMPS input file" in capsys.readouterr().err


def test_model_error_stops_run_and_names_line(tmp_path, monkeypatch):
    """An exception in the model call cannot cross LAMMPS: the run halts at once and run_input re-raises it."""
    from integ_support import new_lammps

    from mlip.errors import DataError
    from mlip.integrations.lammps import run_input
    from mlip.integrations.lammps_domain import DomainPotential

    calls = []

    def failing(self, positions, numbers, ids, nlocal, **box):
        calls.append(1)
        raise DataError("model failed")

    monkeypatch.setattr(DomainPotential, "__call__", failing)
    script = tmp_path / "in.lammps"
    script.write_text(lammps_setup(molecule(), periodic=False) + "fix nve all nve\nrun 100000\nrun 100000\n")
    lmp = new_lammps()
    with pytest.raises(DataError, match=r"in.lammps: line 17: model failed"):
        run_input(lmp, script, tiny_model(num_interactions=1), ELEMENTS)
    assert len(calls) == 1 and lmp.get_thermo("step") <= 1
    lmp.close()
