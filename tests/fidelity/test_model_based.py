"""Descriptors/energies from a (tiny, untrained) mlip model and the --model paths of the CLIs."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
import torch
from fidelity_synth import make_frames

from mlip.cli.align import main as align_main
from mlip.cli.select import main as select_main
from mlip.data.batch import collate
from mlip.data.graph import configuration_to_graph
from mlip.data.structures import as_configuration
from mlip.fidelity.descriptors import model_outputs
from mlip.fidelity.labels import element_counts
from mlip.io.model_file import save_model
from mlip.nn.hparams import ModelHyperparameters
from mlip.nn.model import build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    hp = ModelHyperparameters(
        atomic_numbers=[1, 6, 8], heads=["Default"], atomic_energies=[[-1.0, -2.0, -3.0]],
        r_max=4.0, num_bessel=4, max_ell=1, hidden_irreps="4x0e + 4x1o", num_interactions=2,
        correlation=2, radial_mlp=[8], mlp_irreps="4x0e", avg_num_neighbors=3.0,
    )
    return build_model(hp, dtype=torch.float64)


def _single(model, atoms):
    graph = configuration_to_graph(as_configuration(atoms, "Default"), float(model.r_max), ["Default"])
    with torch.no_grad():
        out = model(collate([graph], torch.float64), compute_forces=False)
    return float(out["energy"][0]), out["node_feats"].numpy().mean(axis=0)


def test_model_outputs_match_single_structure_forward(model):
    frames = make_frames(seed=2)
    res = model_outputs(model, frames, batch_size=4)
    assert res["energy"].shape == (9,) and res["descriptors"].shape[0] == 9
    for k in (0, 4, 8):
        e, d = _single(model, frames[k])
        assert res["energy"][k] == pytest.approx(e, abs=1e-10)
        np.testing.assert_allclose(res["descriptors"][k], d, atol=1e-10)


def test_cli_shifts_and_select_with_model(model, tmp_path):
    path = tmp_path / "model.pt"
    save_model(model, path)
    frames = make_frames(seed=3)
    data = tmp_path / "data.xyz"
    ase.io.write(data, frames, format="extxyz")
    out = tmp_path / "shifted.xyz"
    assert align_main(["shifts", "--model", str(path), "--data", str(data), "-o", str(out), "--device", "cpu"]) == 0
    rec = json.loads(out.with_suffix(".json").read_text())
    pred = model_outputs(model, frames)["energy"]
    counts = element_counts(frames, [1, 6, 8])
    ref = np.array([a.get_potential_energy() for a in frames])
    # independent closed form: normal equations of min ||ref + N d - pred||
    d = np.linalg.solve(counts.T @ counts, counts.T @ (pred - ref))
    assert [rec["shifts"][s] for s in ("H", "C", "O")] == pytest.approx(d.tolist(), abs=1e-6)
    assert rec["rmse_after"] < rec["rmse_before"]
    sub = tmp_path / "sub.xyz"
    assert select_main(["--data", str(data), "-n", "3", "--model", str(path), "-o", str(sub), "--device", "cpu"]) == 0
    assert len(ase.io.read(sub, ":")) == 3
