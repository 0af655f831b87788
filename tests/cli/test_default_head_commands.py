"""A fine-tuned model (several heads, ``default_head`` in its file) through every command that takes ``--model``.

Without ``--head`` each command must use the model's ``default_head`` (:mod:`mlip.nn.heads`), not its first
head: the result equals the run with ``--head <default>`` and differs from the run with the first head.
``mlip-select --model`` and ``mlip-convert`` have no head (node features and weights do not depend on it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integrations"))

from e3d_support import ACAC, E0, tiny_model  # noqa: E402

HEADS = ["pt_head", "acac"]  # fine-tuning keeps the pretrained head first and makes the new one the default
DEFAULT = "acac"


def _save(model, path: Path) -> Path:
    from mlip.io.model_file import save_model

    save_model(model, path, metadata={"default_head": DEFAULT})
    return path


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory) -> tuple[Path, Path]:
    """``(model file, data file)``: a two-head H/C/O model whose heads differ, and 3 acac frames with no head key."""
    folder = tmp_path_factory.mktemp("finetuned")
    e0 = [E0[1], E0[6], E0[8]]
    model = tiny_model(heads=HEADS, atomic_energies=[e0, [v + 0.5 for v in e0]], scale=[1.3, 0.6], shift=[-0.4, 0.3])
    frames = ase.io.read(ACAC, index=":3")
    assert all("head" not in atoms.info for atoms in frames)
    data = folder / "frames.xyz"
    ase.io.write(data, frames)
    return _save(model, folder / "model.pt"), data


def _by_head(run, *extra_for_default: str):
    """``run(head_args) -> value`` for no ``--head``, ``--head acac`` and ``--head pt_head``."""
    return run(list(extra_for_default)), run(["--head", DEFAULT]), run(["--head", HEADS[0]])


def test_eval(finetuned, tmp_path):
    from mlip.cli.eval import main

    model, data = finetuned

    def run(head_args):
        out = tmp_path / f"pred{len(list(tmp_path.iterdir()))}.xyz"
        assert main(["--model", str(model), "--data", str(data), "--output", str(out), *head_args]) == 0
        return np.array([a.info["MLIP_energy"] for a in ase.io.read(out, ":")])

    plain, default, first = _by_head(run)
    np.testing.assert_array_equal(plain, default)
    assert np.abs(plain - first).min() > 0.1


def test_align_shifts(finetuned, tmp_path):
    from mlip.cli.align import main

    model, data = finetuned

    def run(head_args):
        out = tmp_path / f"aligned{len(list(tmp_path.iterdir()))}.xyz"
        assert main(["shifts", "--model", str(model), "--data", str(data), "-o", str(out), *head_args]) == 0
        return np.array(list(json.loads(out.with_suffix(".json").read_text())["shifts"].values()))

    plain, default, first = _by_head(run)
    np.testing.assert_allclose(plain, default, rtol=0, atol=1e-9)
    assert np.abs(plain - first).max() > 1e-3


def test_bonds(finetuned, tmp_path):
    from mlip.cli.bonds import main

    model, data = finetuned

    def run(head_args):
        out = tmp_path / f"bonds{len(list(tmp_path.iterdir()))}"
        assert main(["--model", str(model), "--data", f"{data}", "--no-plots", "--output", str(out), *head_args]) == 0
        summary = json.loads((out / "summary.json").read_text())
        return summary["head"], summary["structures"][0]["e_coh"]

    plain, default, first = _by_head(run)
    assert plain == default and plain[0] == DEFAULT and first[0] == HEADS[0]
    assert plain[1] != pytest.approx(first[1])


def test_uncertainty_fit(finetuned, tmp_path):
    from mlip.cli.uncertainty import main
    from mlip.uncertainty.llpr import load_llpr

    model, data = finetuned
    out = tmp_path / "llpr.pt"
    assert main(["fit", "--model", str(model), "--train", str(data), "--valid", str(data), "-o", str(out)]) == 0
    assert list(load_llpr(out).heads) == [DEFAULT]  # frames naming no head were fitted on the default head


def test_lammps(tmp_path):
    from integ_support import ELEMENTS, lammps_or_skip, lammps_setup, molecule

    from mlip.calculator import MLIPCalculator
    from mlip.cli.lammps import main

    lammps_or_skip()
    model = _save(tiny_model(atomic_numbers=[14, 42], heads=HEADS, atomic_energies=[[-5.0, -11.0], [-4.0, -10.0]],
                             scale=[1.3, 0.6], shift=[-0.4, 0.3]), tmp_path / "simo.pt")
    atoms = molecule()
    script = tmp_path / "in.lammps"
    script.write_text(lammps_setup(atoms, periodic=False) + "thermo_style custom step pe\nrun 0\n")
    log = tmp_path / "run.log"
    assert main(["--model", str(model), "--elements", *ELEMENTS, "-in", str(script), "-log", str(log),
                 "-screen", "none"]) == 0
    lines = log.read_text().splitlines()
    pe = float(lines[lines.index(next(x for x in lines if x.split()[:2] == ["Step", "PotEng"])) + 1].split()[1])
    energies = {}
    for head in HEADS:
        reference = atoms.copy()
        reference.calc = MLIPCalculator(str(model), head=head)
        energies[head] = reference.get_potential_energy()
    assert abs(pe - energies[DEFAULT]) < 1e-5 * max(1.0, abs(pe))  # thermo prints ~8 significant digits
    assert abs(energies[DEFAULT] - energies[HEADS[0]]) > 0.1
