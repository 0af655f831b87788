"""``train.compile``: the compiled training step against the eager one, and compilations per run.

The default tests use the ``aot_eager`` backend: dynamo captures the same graph with the same guards
and AOTAutograd derives the same joint forward/backward graph, without inductor's code generation
(minutes on a small CPU, see docs/model.md "Compiled training"). The inductor versions run with
``MLIP_SLOW_TESTS=1`` here and in tests/cuda on a GPU.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import torch
from train_support import ACAC, SI, slice_xyz, tiny_config, write_config

from mlip.data.batch import collate
from mlip.data.graph import configuration_to_graph
from mlip.data.io import read_configurations
from mlip.nn.hparams import ModelHyperparameters
from mlip.nn.model import build_model
from mlip.train.compiled_step import CompiledStep
from mlip.train.loss import LossWeights, WeightedLoss

SLOW = os.environ.get("MLIP_SLOW_TESTS") == "1"
BACKENDS = ["aot_eager"] + (["inductor"] if SLOW else [])
# the smallest model with every block the step goes through: embedding, radial MLP, one interaction,
# symmetric contraction, MLP readout, scale/shift, E0s
TINY = dict(hidden_irreps="2x0e + 2x1o", max_ell=1, correlation=2, num_interactions=1, r_max=4.0, num_bessel=4,
            radial_mlp=[8], mlp_irreps="4x0e")


def _model(dtype: torch.dtype, system: str = "acac") -> torch.nn.Module:
    torch.manual_seed(0)
    if system == "si":
        elements = dict(atomic_numbers=[14], atomic_energies=[[-5.4]], scale=[0.5], shift=[0.0])
    else:
        elements = dict(atomic_numbers=[1, 6, 8], atomic_energies=[[-13.6, -1026.9, -2037.8]], scale=[0.8], shift=[-4.9])
    hp = ModelHyperparameters(heads=["Default"], avg_num_neighbors=8.0, **elements, **TINY)
    return build_model(hp, dtype=dtype)


def _batch(dtype: torch.dtype, frames: list[int], system: str = "acac") -> dict[str, torch.Tensor]:
    path = (ACAC if system == "acac" else SI) / "train.xyz"
    if not path.is_file():
        pytest.skip(f"bundled {path.parent} missing")
    configs = read_configurations(path, index=f":{max(frames) + 1}")
    return collate([configuration_to_graph(configs[i], TINY["r_max"], ["Default"]) for i in frames], dtype=dtype)


def _step(model, loss_fn, batch, compiled: CompiledStep | None, stress: bool = False):
    model.zero_grad(set_to_none=True)
    if compiled is None:
        loss, _ = loss_fn(batch, model(batch, compute_forces=True, compute_stress=stress, training=True))
    else:
        loss, _ = compiled(batch, compute_stress=stress)
    loss.backward()
    return loss.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("system", ["acac", "si"])
def test_compiled_step_matches_eager_float64(backend, system):
    """acac: energy + forces; periodic Si (12-24 atoms): energy + forces + stress, and a second batch of
    other sizes reuses the graph."""
    stress = system == "si"
    model = _model(torch.float64, system)
    loss_fn = WeightedLoss("mse", LossWeights(energy=1.0, forces=100.0, stress=100.0 if stress else 0.0))
    compiled = CompiledStep(model, loss_fn, backend=backend, log=None)
    for frames in ([0, 1, 2], [3, 4]) if stress else ([0, 1, 2],):
        batch = _batch(torch.float64, frames, system)
        loss_c, grads_c = _step(model, loss_fn, batch, compiled, stress)
        loss_e, grads_e = _step(model, loss_fn, batch, None, stress)
        assert float(loss_e) > 0
        assert abs(float(loss_c) - float(loss_e)) <= 1e-10 * abs(float(loss_e))
        assert len(grads_e) >= 10
        for name, g in grads_e.items():
            assert grads_c[name] is not None and float(g.abs().max()) > 0, name  # every parameter gets a gradient
            assert float((grads_c[name] - g).abs().max()) <= 1e-8 * max(1.0, float(g.abs().max())), name
    assert compiled.num_compiles == 1  # no graph break, no recompilation


def _counting(instances: list[CompiledStep], backend: str):
    @functools.wraps(CompiledStep)
    def make(*args, **kwargs):
        step = CompiledStep(*args, backend=backend, **kwargs)
        instances.append(step)
        return step

    return make


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_epochs_of_varied_batches_compile_twice(tmp_path, monkeypatch, backend):
    """7 frames in batches of 3: sizes 3, 3, 1 structures (45, 45, 15 atoms; edges vary with the
    geometries) in two epochs. One graph for every multi-structure batch; dynamo specialises a
    dimension of size 1, so the single-structure batch compiles once more: exactly 2."""
    if not (ACAC / "train.xyz").is_file():
        pytest.skip("bundled data/acac missing")
    from mlip.config import config_from_dict
    from mlip.train import trainer as trainer_module
    from mlip.train.run import train

    files = {"train": slice_xyz(ACAC / "train.xyz", tmp_path / "train.xyz", 7),
             "test": slice_xyz(ACAC / "test.xyz", tmp_path / "test.xyz", 2), "isolated": ACAC / "isolated_atoms.xyz"}
    cfg = tiny_config(files, tmp_path / "run", model=dict(TINY), train={"max_epochs": 2, "batch_size": 3,
                                                                          "compile": True})
    cfg["data"]["valid"] = str(slice_xyz(ACAC / "train.xyz", tmp_path / "valid.xyz", 2, start=7))
    del cfg["data"]["valid_fraction"]
    write_config(cfg, tmp_path / "c.yaml")
    instances: list[CompiledStep] = []
    monkeypatch.setattr(trainer_module, "CompiledStep", _counting(instances, backend))
    lines: list[str] = []
    train(config_from_dict(cfg), log=lines.append)
    assert len(instances) == 1
    assert instances[0].num_compiles == 2
    compile_lines = [ln for ln in lines if ln.startswith("train.compile:")]
    assert len(compile_lines) == 1 and "took" in compile_lines[0]  # compilation time reported once
    epochs = [ln for ln in lines if ln.startswith("epoch 2:")]
    assert epochs, lines[-5:]
