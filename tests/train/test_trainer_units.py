"""Checkpoint format, RNG round trip, optimiser groups, mixed dtypes, non-finite losses, stage two."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from train_support import tiny_config

from mlip.config import config_from_dict
from mlip.errors import ConfigError, MLIPError
from mlip.train import loss as loss_module
from mlip.train.checkpoint import get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from mlip.train.optim import parameter_groups
from mlip.train.run import check_dtypes, train


def test_rng_state_round_trip_and_weights_only(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = get_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(()).item())
    for keep in (1, 1, 1):
        save_checkpoint({"rng": state, "epoch": 1}, tmp_path, 1, keep)
    loaded = torch.load(tmp_path / "epoch-00001.pt", weights_only=True)
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(()).item()) == expected


def test_keep_only_newest_checkpoints(tmp_path):
    for epoch in range(1, 5):
        save_checkpoint({"epoch": epoch}, tmp_path, epoch, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-00003.pt", "epoch-00004.pt"]


def test_corrupt_checkpoint_is_one_line_error(tmp_path):
    bad = tmp_path / "epoch-00001.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(MLIPError) as err:
        load_checkpoint(bad)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)


def test_no_weight_decay_on_biases_embeddings_scalars():
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3, 3)
            self.node_embedding = torch.nn.Parameter(torch.ones(4, 2))
            self.alpha = torch.nn.Parameter(torch.ones(()))
            self.radial = torch.nn.Linear(2, 2, bias=False)
            self.readouts = torch.nn.Linear(2, 2, bias=False)

    groups = {g["name"]: g for g in parameter_groups(M(), 0.1)}
    m = M()
    assert len(groups["decay"]["params"]) == 1 and groups["decay"]["params"][0].shape == m.linear.weight.shape
    assert groups["decay"]["weight_decay"] == 0.1 and groups["no_decay"]["weight_decay"] == 0.0
    assert len(groups["no_decay"]["params"]) == 5


def test_mixed_dtypes_are_refused():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2).double(), torch.nn.Linear(2, 2).float())
    with pytest.raises(ConfigError, match="mixed dtypes: model holds float32, float64 but the run uses float64"):
        check_dtypes(model, torch.float64)
    check_dtypes(torch.nn.Linear(2, 2).double(), torch.float64)


def _nan_on_call(monkeypatch, calls_to_poison: set[int]):
    original = loss_module.WeightedLoss.forward
    counter = {"n": 0}

    def forward(self, batch, output):
        total, terms = original(self, batch, output)
        if torch.is_grad_enabled() and total.requires_grad:  # training calls only
            counter["n"] += 1
            if counter["n"] in calls_to_poison:
                total = total * float("nan")
        return total, terms

    monkeypatch.setattr(loss_module.WeightedLoss, "forward", forward)


def test_nonfinite_loss_stops_naming_epoch_and_batch(acac_small, tmp_path, monkeypatch):
    # 15 training frames, batch 4 -> 4 batches per epoch: training call 6 is epoch 2, batch 2
    _nan_on_call(monkeypatch, {6})
    run = tmp_path / "run"
    cfg = config_from_dict(tiny_config(acac_small, run, train={"max_epochs": 3}))
    with pytest.raises(MLIPError) as err:
        train(cfg, log=lambda s: None)
    msg = str(err.value)
    assert "epoch 2, batch 2" in msg and "epoch-00001.pt" in msg and "\n" not in msg
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-00001.pt"]
    ckpt = load_checkpoint(run / "checkpoints" / "epoch-00001.pt")
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_nonfinite_loss_skip_counts(acac_small, tmp_path, monkeypatch):
    _nan_on_call(monkeypatch, {2, 3})
    run = tmp_path / "run"
    cfg = config_from_dict(tiny_config(acac_small, run, train={"max_epochs": 1, "on_nonfinite": "skip"}))
    train(cfg, log=lambda s: None)
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["n_skipped"] == 2


def test_stage_two_switches_weights_and_lr(acac_small, tmp_path):
    run = tmp_path / "run"
    cfg = config_from_dict(tiny_config(
        acac_small, run, train={"max_epochs": 3, "lr": 0.01},
        stage_two={"start_epoch": 3, "lr": 0.001, "energy_weight": 1.0, "forces_weight": 0.0},
        schedule={"name": "none"},
    ))
    logs = []
    train(cfg, log=logs.append)
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in recs] == [0.01, 0.01, 0.001]
    assert any("stage two from epoch 3" in line for line in logs)
    # epoch 3's validation loss is measured without the force term (weight 100 before): far smaller,
    # and equal to the squared per-atom energy RMSE (all frames weight 1)
    assert recs[2]["valid_loss"] < 0.05 * recs[1]["valid_loss"]
    e_rmse = recs[2]["valid"]["Default"]["all"]["energy_rmse_per_atom"]
    assert recs[2]["valid_loss"] == pytest.approx(e_rmse**2, rel=1e-9)


def test_early_stopping_with_patience(acac_small, tmp_path, monkeypatch):
    from mlip.train import trainer as trainer_module

    losses = iter([5.0, 4.0, 4.5, 4.2, 3.0, 1.0])
    real_evaluate = trainer_module.evaluate

    def fake_evaluate(*args, **kwargs):
        errors, _ = real_evaluate(*args, **kwargs)
        return errors, next(losses)

    monkeypatch.setattr(trainer_module, "evaluate", fake_evaluate)
    run = tmp_path / "run"
    cfg = config_from_dict(tiny_config(acac_small, run, train={"max_epochs": 6, "patience": 2}))
    logs = []
    train(cfg, log=logs.append)
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # best at epoch 2 (4.0); epochs 3 and 4 do not improve -> stop after epoch 4
    assert [r["epoch"] for r in recs] == [1, 2, 3, 4]
    assert any("early stopping at epoch 4" in line for line in logs)
    final = json.loads((run / "final_metrics.json").read_text())
    assert final["best_epoch"] == 2 and final["best_valid_loss"] == 4.0
    assert (run / "checkpoints" / "epoch-00004.pt").is_file()
