"""mlip-uncertainty fit/show, mlip-eval --uncertainty/--committee, mlip-select --uncertainty (tiny model, few frames)."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from u_support import molecule, tiny_model

from mlip.calculator import MLIPCalculator
from mlip.cli import eval as eval_cli
from mlip.cli import select as select_cli
from mlip.cli import uncertainty as unc_cli
from mlip.fidelity.select import select_by_score
from mlip.io.model_file import save_model
from mlip.uncertainty import load_llpr


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """model.pt (student), teacher-labelled train/valid/pool files, a second model for a committee."""
    d = tmp_path_factory.mktemp("unc")
    save_model(tiny_model(seed=5), d / "model.pt")
    save_model(tiny_model(seed=6), d / "model2.pt")
    teacher = MLIPCalculator(tiny_model(seed=7))
    rng = np.random.default_rng(20)
    for name, n in (("train", 10), ("valid", 6), ("pool", 8)):
        frames = []
        for _ in range(n):
            c = molecule(rng, int(rng.integers(4, 7)))
            atoms = Atoms(numbers=c.numbers, positions=c.positions)
            atoms.calc = teacher
            e, f = atoms.get_potential_energy(), atoms.get_forces()
            atoms.calc = SinglePointCalculator(atoms, energy=e + rng.normal(0, 0.01), forces=f)
            frames.append(atoms)
        ase.io.write(d / f"{name}.xyz", frames, format="extxyz")
    return d


def run(main, argv, capsys):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr()


def test_fit_show_eval_and_select(files, capsys):
    d = files
    code, out = run(unc_cli.main, ["fit", "--model", d / "model.pt", "--train", d / "train.xyz", "--valid",
                                   d / "valid.xyz", "-o", d / "model_llpr.pt", "--batch-size", 4], capsys)
    assert code == 0, out.err
    assert "alpha^2" in out.out
    head = load_llpr(d / "model_llpr.pt").heads["Default"]
    assert head.n_train == 10 and head.n_valid == 6 and head.calibrated_on == ["energy", "forces"]
    assert head.alpha2 > 0 and head.reg > 0
    code, out = run(unc_cli.main, ["fit", "--model", d / "model.pt", "--train", d / "train.xyz", "--valid",
                                   d / "valid.xyz", "-o", d / "chunked.pt", "--batch-size", 4, "--chunk-frames", 3],
                    capsys)
    assert code == 0, out.err
    chunked = load_llpr(d / "chunked.pt").heads["Default"]  # train read 3 frames at a time: same H0
    assert chunked.n_train == 10 and bool((chunked.gram == head.gram).all())
    code, out = run(unc_cli.main, ["show", d / "model_llpr.pt"], capsys)
    assert code == 0 and "head Default: P = 8" in out.out

    code, out = run(eval_cli.main, ["--model", d / "model_llpr.pt", "--data", d / "pool.xyz", "--uncertainty",
                                    "--output", d / "pred.xyz"], capsys)
    assert code == 0, out.err
    pred = ase.io.read(d / "pred.xyz", ":")
    calc = MLIPCalculator(d / "model_llpr.pt", uncertainty=load_llpr(d / "model_llpr.pt"))
    expected = []
    for atoms in pred:
        probe = Atoms(numbers=atoms.numbers, positions=atoms.positions)
        e_sigma = calc.get_property("energy_uncertainty", probe)
        f_sigma = calc.get_property("forces_uncertainty", probe)
        assert atoms.info["MLIP_energy_uncertainty"] == pytest.approx(e_sigma, rel=1e-6)
        np.testing.assert_allclose(atoms.arrays["MLIP_forces_uncertainty"], f_sigma, rtol=1e-6)
        expected.append(np.sqrt(np.sum(f_sigma**2) / (3 * len(probe))))  # predicted force RMSE

    code, out = run(select_cli.main, ["--uncertainty", "--model", d / "model_llpr.pt", "--data", d / "pool.xyz",
                                      "-n", 3, "-o", d / "picked.xyz", "--indices", d / "idx.txt"], capsys)
    assert code == 0, out.err
    picked = [int(x) for x in (d / "idx.txt").read_text().split()]
    assert picked == list(np.argsort(-np.array(expected))[:3])
    assert len(ase.io.read(d / "picked.xyz", ":")) == 3


def test_committee_in_eval(files, capsys):
    d = files
    code, out = run(eval_cli.main, ["--model", d / "model.pt", "--data", d / "pool.xyz", "--uncertainty",
                                    "--committee", d / "model2.pt", "--output", d / "pred_c.xyz", "--info-prefix", "C_"],
                    capsys)
    assert code == 0, out.err
    atoms = ase.io.read(d / "pred_c.xyz", "0")
    assert "C_forces_uncertainty" in atoms.arrays and "MLIP_energy_uncertainty" not in atoms.info
    probe = Atoms(numbers=atoms.numbers, positions=atoms.positions)
    e = [MLIPCalculator(d / m).get_potential_energy(probe.copy()) for m in ("model.pt", "model2.pt")]
    assert atoms.info["C_energy_uncertainty"] == pytest.approx(abs(e[0] - e[1]) / np.sqrt(2), rel=1e-8)


@pytest.mark.parametrize("argv, needle", [
    (["fit", "--model", "{d}/model.pt", "--train", "{d}/train.xyz", "--valid", "{d}/nope.xyz", "-o", "{d}/x.pt"],
     "nope.xyz: file not found"),
    (["fit", "--model", "{d}/model.pt", "--train", "{d}/train.xyz", "--valid", "{d}/valid.xyz", "-o", "{d}/x.pt",
      "--calibrate-on", "stress"], "--calibrate-on"),
    (["show", "{d}/model.pt"], "has no LLPR"),
])
def test_bad_input_is_one_line_exit_2(files, capsys, argv, needle):
    code, out = run(unc_cli.main, [a.format(d=files) for a in argv], capsys)
    assert code == 2
    assert needle in out.err and len(out.err.strip().splitlines()) == 1 and "Traceback" not in out.err


def test_select_by_score_top_and_diverse():
    scores = np.array([0.1, 0.9, 0.8, 0.85, 0.2, 0.95])
    assert select_by_score(scores, 3).tolist() == [5, 1, 3]
    x = np.array([[0.0], [0.0], [5.0], [0.01], [9.0], [0.02]])  # 5, 1, 3 are near-duplicates
    assert select_by_score(scores, 2, x, pool_factor=2.0).tolist() == [5, 2]


def test_force_samples_flag(files, capsys):
    """--force-samples K in mlip-eval/mlip-select: the sampled LLPR force sigmas of load_llpr(path, force_samples=K)
    (seeded, so equal), close to the exact ones for a large K; refused for K < 1 and for a committee."""
    d = files
    if not (d / "model_llpr.pt").is_file():
        assert run(unc_cli.main, ["fit", "--model", d / "model.pt", "--train", d / "train.xyz", "--valid",
                                  d / "valid.xyz", "-o", d / "model_llpr.pt"], capsys)[0] == 0
    k = 200  # relative noise about sqrt(2 / k) = 10 % per component, less on a per-atom sigma (3 components)
    code, out = run(eval_cli.main, ["--model", d / "model_llpr.pt", "--data", d / "pool.xyz", "--uncertainty",
                                    "--output", d / "pred_k.xyz", "--force-samples", k], capsys)
    assert code == 0, out.err
    sampled = MLIPCalculator(d / "model_llpr.pt", uncertainty=load_llpr(d / "model_llpr.pt", force_samples=k))
    exact = MLIPCalculator(d / "model_llpr.pt", uncertainty=load_llpr(d / "model_llpr.pt"))
    for atoms in ase.io.read(d / "pred_k.xyz", ":"):
        probe = Atoms(numbers=atoms.numbers, positions=atoms.positions)
        written = atoms.arrays["MLIP_forces_uncertainty"]
        np.testing.assert_allclose(written, sampled.get_property("forces_uncertainty", probe), rtol=1e-6)
        np.testing.assert_allclose(written, exact.get_property("forces_uncertainty", probe.copy()), rtol=0.25)
    code, out = run(select_cli.main, ["--uncertainty", "--model", d / "model_llpr.pt", "--data", d / "pool.xyz",
                                      "-n", 3, "-o", d / "picked_k.xyz", "--force-samples", 8], capsys)
    assert code == 0, out.err
    for argv in (["--force-samples", 0], ["--force-samples", 4, "--committee", d / "model2.pt"]):
        code, out = run(select_cli.main, ["--uncertainty", "--model", d / "model_llpr.pt", "--data", d / "pool.xyz",
                                          "-n", 3, "-o", d / "bad.xyz", *argv], capsys)
        assert code == 2 and "--force-samples" in out.err and len(out.err.strip().splitlines()) == 1
    code, out = run(eval_cli.main, ["--model", d / "model.pt", "--data", d / "pool.xyz", "--force-samples", 4], capsys)
    assert code == 2 and "--force-samples needs --uncertainty" in out.err
