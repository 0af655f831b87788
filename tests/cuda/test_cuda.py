"""CUDA: training (float32, float64), compiled training, the calculator, cueq's fused kernels against e3nn.

Marked ``cuda``; every test skips with a reason where there is no CUDA device (``pytest -m cuda``;
scripts/gpu_check.sh runs them on a GPU). Status: written without a GPU, never run yet (docs/benchmarks.md).
References are the same computations on the CPU in float64, so a test fails on any device-specific error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_support import ACAC, slice_xyz, tiny_config, write_config  # noqa: E402

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available() is False)")]

EPS = {"float32": float(torch.finfo(torch.float32).eps), "float64": float(torch.finfo(torch.float64).eps)}
TINY = dict(hidden_irreps="8x0e + 8x1o", max_ell=2, correlation=3, num_interactions=2, r_max=4.0, num_bessel=8,
            radial_mlp=[16, 16], mlp_irreps="8x0e")


def _files(tmp_path: Path) -> dict[str, Path]:
    if not (ACAC / "train.xyz").is_file():
        pytest.skip("bundled data/acac missing")
    return {"train": slice_xyz(ACAC / "train.xyz", tmp_path / "train.xyz", 8),
            "valid": slice_xyz(ACAC / "train.xyz", tmp_path / "valid.xyz", 3, start=8),
            "test": slice_xyz(ACAC / "test.xyz", tmp_path / "test.xyz", 3), "isolated": ACAC / "isolated_atoms.xyz"}


def _model(dtype: torch.dtype, backend: str = "e3nn") -> torch.nn.Module:
    from mlip.nn.hparams import ModelHyperparameters
    from mlip.nn.model import build_model

    torch.manual_seed(0)
    hp = ModelHyperparameters(atomic_numbers=[1, 6, 8], heads=["Default"], atomic_energies=[[-13.6, -1026.9, -2037.8]],
                              scale=[0.8], shift=[-4.9], avg_num_neighbors=8.0, backend=backend, **TINY)
    return build_model(hp, dtype=dtype)


def _batch(dtype: torch.dtype, device: str, n: int = 4) -> dict[str, torch.Tensor]:
    from mlip.data.batch import collate
    from mlip.data.graph import configuration_to_graph
    from mlip.data.io import read_configurations

    if not (ACAC / "train.xyz").is_file():
        pytest.skip("bundled data/acac missing")
    configs = read_configurations(ACAC / "train.xyz", index=f":{n}")
    batch = collate([configuration_to_graph(c, TINY["r_max"], ["Default"]) for c in configs], dtype=dtype)
    return {k: v.to(device) for k, v in batch.items()}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("compile_step", [False, True])
def test_training_on_cuda(tmp_path, dtype, compile_step):
    from mlip.cli.train import main as train_main
    from mlip.io.model_file import read_model_info

    files = _files(tmp_path)  # the set-up of tests/train/test_float32.py, where both losses go down on CPU
    cfg = tiny_config(files, tmp_path / "run", device="cuda", dtype=dtype,
                      train={"max_epochs": 2, "batch_size": 4, "compile": compile_step})
    cfg["data"]["valid"] = str(files["valid"])
    del cfg["data"]["valid_fraction"]
    assert train_main(["--config", str(write_config(cfg, tmp_path / "c.yaml"))]) == 0
    m = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert m[1]["train_loss"] < m[0]["train_loss"] and m[1]["valid_loss"] < m[0]["valid_loss"]
    assert read_model_info(tmp_path / "run" / "model.pt")[0]["dtype"] == dtype


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_step_matches_eager_on_cuda(dtype):
    """Inductor (Triton) step against the eager step on the GPU: float64 to 1e-10 (loss) / 1e-8 (gradients),
    float32 within 1e3 eps32 of the magnitudes (reordered sums in generated kernels)."""
    from mlip.train.compiled_step import CompiledStep
    from mlip.train.loss import LossWeights, WeightedLoss

    tdtype = getattr(torch, dtype)
    model = _model(tdtype).cuda()
    loss_fn = WeightedLoss("mse", LossWeights(energy=1.0, forces=100.0))
    compiled = CompiledStep(model, loss_fn, log=None)
    results = []
    for step in (compiled, None):
        model.zero_grad(set_to_none=True)
        batch = _batch(tdtype, "cuda")
        loss = step(batch)[0] if step else loss_fn(batch, model(batch, compute_forces=True, training=True))[0]
        loss.backward()
        results.append((float(loss), {n: p.grad.double().cpu() for n, p in model.named_parameters()}))
    (lc, gc), (le, ge) = results
    rl, rg = (1e-10, 1e-8) if dtype == "float64" else (1e3 * EPS[dtype], 1e3 * EPS[dtype])
    assert abs(lc - le) <= rl * abs(le)
    for name, g in ge.items():
        assert float((gc[name] - g).abs().max()) <= rg * max(1.0, float(g.abs().max())), name
    # a second, differently sized batch reuses the graph
    model.zero_grad(set_to_none=True)
    compiled(_batch(tdtype, "cuda", n=3))[0].backward()
    assert compiled.num_compiles == 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("compile_calc", [False, True])
def test_calculator_cuda_matches_cpu(dtype, compile_calc):
    from ase.io import read

    from mlip.calculator import MLIPCalculator

    if not (ACAC / "test.xyz").is_file():
        pytest.skip("bundled data/acac missing")
    model = _model(torch.float64)
    ref_calc = MLIPCalculator(model, device="cpu", dtype="float64")
    calc = MLIPCalculator(model, device="cuda", dtype=dtype, compile=compile_calc)
    for atoms in read(ACAC / "test.xyz", ":3"):
        ref = atoms.copy()
        ref.calc = ref_calc
        atoms.calc = calc
        e, f = atoms.get_potential_energy(), atoms.get_forces()
        e_ref, f_ref = ref.get_potential_energy(), ref.get_forces()
        # per-atom interaction energies are O(5 eV): the rounding budget scales with their sum
        budget = 1e3 * EPS[dtype] if dtype == "float32" else 1e-10
        assert abs(e - e_ref) <= budget * 5.0 * len(atoms)
        assert float(np.abs(f - f_ref).max()) <= budget * max(1.0, float(np.abs(f_ref).max()))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cueq_fused_kernels_match_e3nn(dtype):
    """cuEquivariance with its CUDA kernels (fused_tp, uniform_1d) against the e3nn model on the GPU."""
    pytest.importorskip("cuequivariance_torch", reason="cuequivariance-torch not installed")
    pytest.importorskip("cuequivariance_ops_torch", reason="cuequivariance-ops-torch (fused CUDA kernels) not installed")
    from mlip.nn.backends.convert import convert_backend

    tdtype = getattr(torch, dtype)
    e3nn_model = _model(tdtype).cuda()
    cueq_model = convert_backend(e3nn_model, "cueq", check=False).cuda()
    batch = _batch(tdtype, "cuda")
    outs = [m(batch, compute_forces=True, compute_stress=False) for m in (e3nn_model, cueq_model)]
    fast = [m for m in cueq_model.modules() if hasattr(m, "_impl") and "fast" in m._impl]
    assert fast, "no cuEquivariance module selected a fused CUDA kernel"
    tol = 1e-10 if dtype == "float64" else 1e3 * EPS[dtype]
    for key in ("energy", "forces"):
        a, b = outs[0][key].double(), outs[1][key].double()
        scale = float(a.abs().max()) if key == "forces" else 5.0 * batch["positions"].shape[0]
        assert float((a - b).abs().max()) <= tol * max(1.0, scale), key
