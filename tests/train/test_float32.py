"""float32 everywhere: {float32, float64} x {train 2 epochs, resume, fine-tune, eval, calculator}.

Tiny model (train_support.TINY_MODEL), 8 acac training frames. Also a multi-head (replay) fine-tune,
on-disk (.h5) training data and the cueq backend in float32, and the float32 model evaluated in
float64 within float32 rounding (tolerances from eps32 and the magnitudes; docs/model.md "Precision").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from train_support import ACAC, slice_xyz, tiny_config, write_config

from mlip.cli.eval import main as eval_main
from mlip.cli.train import main as train_main
from mlip.io.model_file import load_model, read_model_info

DTYPES = ["float32", "float64"]
EPS32 = float(torch.finfo(torch.float32).eps)
# Rounding budgets of one float32 evaluation, in units of eps32 times a magnitude. Energy: the model sums
# per-atom energies in float64, so the error is that of the per-atom interaction energies, each a chain of
# float32 operations: budget 8 eps32 * sum_i |E_i - E0_i| (measured 0.3-0.4 units on these frames); this is
# 10x below half a float32 ulp of the ~9400 eV total, so a float32 total would fail it. Forces: a net force
# is a sum of per-edge terms (and their backward) that largely cancel, so its error relative to the largest
# force is larger: budget 128 eps32 * max|F| (measured 13-26 units; 1.9e-6 relative in scripts/float32_error.py).
ENERGY_UNITS = 8
FORCE_UNITS = 128


def _files(root: Path) -> dict[str, Path]:
    if not (ACAC / "train.xyz").is_file():
        pytest.skip("bundled data/acac missing")
    root.mkdir(parents=True, exist_ok=True)
    return {"train": slice_xyz(ACAC / "train.xyz", root / "train.xyz", 8),
            "valid": slice_xyz(ACAC / "train.xyz", root / "valid.xyz", 3, start=8),
            "test": slice_xyz(ACAC / "test.xyz", root / "test.xyz", 3), "isolated": ACAC / "isolated_atoms.xyz"}


def _config(files: dict[str, Path], out: Path, dtype: str, epochs: int) -> dict:
    cfg = tiny_config(files, out, dtype=dtype, train={"max_epochs": epochs, "batch_size": 4},
                      checkpoint={"interval": 1, "keep": 3})
    cfg["data"]["valid"] = str(files["valid"])
    del cfg["data"]["valid_fraction"]
    return cfg


def _metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """Per dtype: a 3-epoch run, and a 2-epoch run resumed to 3 epochs."""
    root = tmp_path_factory.mktemp("f32")
    files = _files(root / "data")
    out: dict[str, dict[str, Path]] = {}
    for dtype in DTYPES:
        full, cut = root / f"{dtype}_full", root / f"{dtype}_cut"
        assert train_main(["--config", str(write_config(_config(files, full, dtype, 3), root / f"{dtype}_f.yaml"))]) == 0
        cut_yaml = root / f"{dtype}_c.yaml"
        assert train_main(["--config", str(write_config(_config(files, cut, dtype, 2), cut_yaml))]) == 0
        out[dtype] = {"full": full, "cut2": root / f"{dtype}_cut2_metrics.jsonl", **files}
        out[dtype]["cut2"].write_text((cut / "metrics.jsonl").read_text())
        write_config(_config(files, cut, dtype, 3), cut_yaml)
        assert train_main(["--config", str(cut_yaml), "--resume"]) == 0
        out[dtype]["cut"] = cut
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_two_epochs_loss_goes_down(runs, dtype):
    m = [json.loads(x) for x in runs[dtype]["cut2"].read_text().splitlines()]
    assert [r["epoch"] for r in m] == [1, 2]
    assert m[1]["train_loss"] < m[0]["train_loss"] and m[1]["valid_loss"] < m[0]["valid_loss"]
    info, state = read_model_info(runs[dtype]["full"] / "model.pt")
    assert info["dtype"] == dtype
    params = [k for k in state if not k.endswith(("atomic_energies", "scale", "shift"))]
    assert all(state[k].dtype == getattr(torch, dtype) for k in params if state[k].is_floating_point())
    assert state["atomic_energies"].dtype == torch.float64  # energy constants stay exact


@pytest.mark.parametrize("dtype", DTYPES)
def test_resume_equals_uninterrupted(runs, dtype):
    """Resume of a checkpoint of this dtype (optimizer, EMA, RNG) continues bitwise like the full run."""
    ckpt = {k: torch.load(sorted((runs[dtype][k] / "checkpoints").glob("epoch-*.pt"))[-1], weights_only=True)
            for k in ("full", "cut")}
    assert ckpt["full"]["epoch"] == ckpt["cut"]["epoch"] == 3
    for key, value in ckpt["full"]["model"].items():
        assert torch.equal(value, ckpt["cut"]["model"][key]), key
    for x, y in zip(ckpt["full"]["ema"]["shadow_params"], ckpt["cut"]["ema"]["shadow_params"]):
        assert x.dtype == getattr(torch, dtype) and torch.equal(x, y)
    assert [r["epoch"] for r in _metrics(runs[dtype]["cut"])] == [1, 2, 3]


@pytest.mark.parametrize("dtype", DTYPES)
def test_finetune_naive(runs, dtype, tmp_path):
    r = runs[dtype]
    cfg = {"data": {"train": str(r["train"]), "valid": str(r["valid"])},
           "finetune": {"from_model": str(r["full"] / "model.pt"), "mode": "naive"},
           "train": {"max_epochs": 1, "batch_size": 4, "progress": False, "plot": False},
           "output_dir": str(tmp_path / "ft"), "device": "cpu", "seed": 1, "dtype": dtype}
    assert train_main(["--config", str(write_config(cfg, tmp_path / "ft.yaml"))]) == 0
    info, state = read_model_info(tmp_path / "ft" / "model.pt")
    _, before = read_model_info(r["full"] / "model.pt")
    assert info["dtype"] == dtype
    assert any(not torch.equal(state[k], before[k]) for k in before if k.startswith("interactions."))
    assert np.isfinite(_metrics(tmp_path / "ft")[0]["train_loss"])


def test_finetune_multihead_replay_float32(runs, tmp_path):
    r = runs["float32"]
    cfg = {"data": {"train": str(r["train"]), "valid_fraction": 0.25},
           "finetune": {"from_model": str(r["full"] / "model.pt"),
                        "replay": {"data": [str(r["test"])], "minimum": 2}},
           "train": {"max_epochs": 1, "batch_size": 4, "progress": False, "plot": False},
           "output_dir": str(tmp_path / "mh"), "device": "cpu", "seed": 1, "dtype": "float32"}
    assert train_main(["--config", str(write_config(cfg, tmp_path / "mh.yaml"))]) == 0
    info, _ = read_model_info(tmp_path / "mh" / "model.pt")
    assert info["dtype"] == "float32" and len(info["heads"]) == 2
    final = json.loads((tmp_path / "mh" / "final_metrics.json").read_text())
    assert len([h for h in final["train"] if h != "all"]) == 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_eval_cli(runs, dtype, tmp_path):
    r = runs[dtype]
    assert eval_main(["--model", str(r["full"] / "model.pt"), "--data", str(r["test"]), "--device", "cpu",
                      "--json", str(tmp_path / "m.json")]) == 0
    got = json.loads((tmp_path / "m.json").read_text())
    final = json.loads((r["full"] / "final_metrics.json").read_text())["test"]["Default"]["all"]
    assert got["n_configs"] == 3
    # the run's own final evaluation of the test split, same model, same dtype
    assert got["forces_rmse"] == pytest.approx(final["forces_rmse"], rel=1e-5)


def _predict(model_path: Path, xyz: Path, dtype: str, backend: str = "e3nn") -> list[tuple[float, np.ndarray, float]]:
    from ase.io import read

    from mlip.calculator import MLIPCalculator

    calc = MLIPCalculator(str(model_path), device="cpu", dtype=dtype, backend=backend)
    out = []
    for atoms in read(xyz, ":"):
        atoms.calc = calc
        energies = atoms.get_potential_energies()
        e0 = np.array([float(calc.model.atomic_energies[0, calc.model.atomic_numbers.index(int(z))])
                       for z in atoms.numbers])
        # sum over atoms of |per-atom interaction energy|: the magnitude float32 rounding acts on
        scale = float(np.abs(energies - e0).sum())
        out.append((atoms.get_potential_energy(), atoms.get_forces(), max(scale, 1.0)))
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_calculator(runs, dtype):
    r = runs[dtype]
    model = load_model(r["full"] / "model.pt")
    assert model.dtype == getattr(torch, dtype)
    preds = _predict(r["full"] / "model.pt", r["test"], dtype)
    from ase.io import read

    refs = [a.get_potential_energy() for a in read(r["test"], ":")]
    for (energy, forces, _), ref in zip(preds, refs):
        assert forces.shape == (15, 3) and np.isfinite(forces).all()
        assert abs(energy - ref) / 15 < 1.0  # the trained model is in the right eV range (E0s exact)


def _within_float32_rounding(a, b) -> None:
    for (e32, f32, mag), (e64, f64, _) in zip(a, b):
        assert abs(e32 - e64) <= ENERGY_UNITS * EPS32 * mag, (e32 - e64, mag)
        fmax = float(np.abs(f64).max())
        assert float(np.abs(f32 - f64).max()) <= FORCE_UNITS * EPS32 * fmax, (np.abs(f32 - f64).max(), fmax)


def test_float32_model_in_float64_agrees_within_rounding(runs):
    path, xyz = runs["float32"]["full"] / "model.pt", runs["float32"]["test"]
    p32, p64 = _predict(path, xyz, "float32"), _predict(path, xyz, "float64")
    _within_float32_rounding(p32, p64)
    for e32, _, mag in p32:  # tight enough to see a float32 total: below half a float32 ulp of the energy
        assert ENERGY_UNITS * EPS32 * mag < 0.5 * EPS32 * abs(e32) / 4


def test_cueq_float32_matches_e3nn(runs):
    pytest.importorskip("cuequivariance_torch")
    path, xyz = runs["float32"]["full"] / "model.pt", runs["float32"]["test"]
    _within_float32_rounding(_predict(path, xyz, "float32", backend="cueq"), _predict(path, xyz, "float64"))


def test_ondisk_training_float32(runs, tmp_path):
    """mlip-preprocess files train in float32 like the in-memory frames (same batches, same ops)."""
    from mlip.cli.preprocess import main as preprocess

    r = runs["float32"]
    files = {k: r[k] for k in ("train", "valid", "test", "isolated")}
    base = _config(files, tmp_path / "mem", "float32", 1)
    write_config(base, tmp_path / "c.yaml")
    assert preprocess(["--config", str(tmp_path / "c.yaml"), "-o", str(tmp_path / "h5"), "--no-progress"]) == 0
    disk = json.loads(json.dumps(base))
    disk["data"].update(train=str(tmp_path / "h5" / "train.h5"), valid=str(tmp_path / "h5" / "valid.h5"))
    disk["data"].pop("test")
    disk["output_dir"] = str(tmp_path / "disk")
    assert train_main(["--config", str(write_config(disk, tmp_path / "d.yaml"))]) == 0
    mem = _metrics(r["cut"])[0]  # epoch 1 of the in-memory float32 run (same seed, frames, batches)
    got = _metrics(tmp_path / "disk")[0]
    assert read_model_info(tmp_path / "disk" / "model.pt")[0]["dtype"] == "float32"
    assert got["train_loss"] == pytest.approx(mem["train_loss"], rel=1e-5)
    assert got["valid_loss"] == pytest.approx(mem["valid_loss"], rel=1e-5)


def test_cueq_training_step_float32_matches_e3nn():
    """One training step (forces by autograd with create_graph, loss, backward) of a float32 cueq model
    (cuEquivariance's dense CPU path) against the same float32 e3nn model: loss and gradients within
    float32 rounding of their magnitudes (both evaluate the same function in a different operation order)."""
    pytest.importorskip("cuequivariance_torch")
    from mlip.data.batch import collate
    from mlip.data.graph import configuration_to_graph
    from mlip.data.io import read_configurations
    from mlip.nn.hparams import ModelHyperparameters
    from mlip.nn.model import build_model
    from mlip.train.loss import LossWeights, WeightedLoss

    if not (ACAC / "train.xyz").is_file():
        pytest.skip("bundled data/acac missing")
    kw = dict(atomic_numbers=[1, 6, 8], heads=["Default"], atomic_energies=[[-13.6, -1026.9, -2037.8]], scale=[0.8],
              shift=[-4.9], avg_num_neighbors=8.0, hidden_irreps="4x0e + 4x1o", max_ell=1, correlation=2,
              num_interactions=2, r_max=4.0, num_bessel=4, radial_mlp=[8], mlp_irreps="4x0e")
    configs = read_configurations(ACAC / "train.xyz", index=":3")
    batch = collate([configuration_to_graph(c, 4.0, ["Default"]) for c in configs], dtype=torch.float32)
    loss_fn = WeightedLoss("mse", LossWeights(energy=1.0, forces=100.0))
    results = []
    for backend in ("e3nn", "cueq"):
        torch.manual_seed(0)
        model = build_model(ModelHyperparameters(backend=backend, **kw), dtype=torch.float32)
        loss, _ = loss_fn(batch, model(batch, compute_forces=True, training=True))
        loss.backward()
        results.append((float(loss), {n: p.grad.double() for n, p in model.named_parameters()}))
    (l_e, g_e), (l_c, g_c) = results
    assert g_e.keys() == g_c.keys()
    assert abs(l_c - l_e) <= FORCE_UNITS * EPS32 * l_e
    for name, g in g_e.items():
        assert float((g_c[name] - g).abs().max()) <= FORCE_UNITS * EPS32 * max(float(g.abs().max()), 1e-3), name
