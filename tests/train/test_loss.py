"""Losses against hand-computed values (numbers worked out in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from mlip.train.loss import LossWeights, WeightedLoss, force_delta_factor, huber

D = torch.float64


def _batch(has_energy=(True, True), has_forces=(True, True), has_stress=(True, True), weight=(1.0, 2.0)):
    """Two frames: frame 0 has 3 atoms, frame 1 has 2 atoms."""
    return {
        "positions": torch.zeros(5, 3, dtype=D),
        "ptr": torch.tensor([0, 3, 5]),
        "batch": torch.tensor([0, 0, 0, 1, 1]),
        "head": torch.tensor([0, 0]),
        "energy": torch.tensor([1.0, 0.0], dtype=D),
        "forces": torch.zeros(5, 3, dtype=D),
        "stress": torch.zeros(2, 3, 3, dtype=D),
        "virials": torch.zeros(2, 3, 3, dtype=D),
        "weight": torch.tensor(weight, dtype=D),
        "energy_weight": torch.ones(2, dtype=D),
        "forces_weight": torch.ones(2, dtype=D),
        "stress_weight": torch.ones(2, dtype=D),
        "virials_weight": torch.ones(2, dtype=D),
        "has_energy": torch.tensor(has_energy),
        "has_forces": torch.tensor(has_forces),
        "has_stress": torch.tensor(has_stress),
        "has_virials": torch.tensor([False, False]),
    }


def _output():
    forces = torch.zeros(5, 3, dtype=D)
    forces[0, 0] = 1.0  # frame 0: one component off by 1
    forces[3, 1] = 2.0  # frame 1: one component off by 2
    stress = torch.zeros(2, 3, 3, dtype=D)
    stress[0, 0, 0] = 3.0
    stress[1, 2, 2] = 1.0
    return {"energy": torch.tensor([4.0, 4.0], dtype=D), "forces": forces, "stress": stress,
            "virials": torch.zeros(2, 3, 3, dtype=D)}


def test_mse_terms_by_hand():
    loss = WeightedLoss("mse", LossWeights(energy=1.0, forces=10.0, stress=100.0))
    total, terms = loss(_batch(), _output())
    # energy per atom errors: (4-1)/3 = 1, (4-0)/2 = 2; squares 1, 4; weights 1, 2 -> (1 + 8) / 2 frames
    assert terms["energy"].item() == pytest.approx(4.5)
    # forces: squared errors 1 (w 1) and 4 (w 2) over 5 atoms * 3 components -> (1 + 8) / 15
    assert terms["forces"].item() == pytest.approx(9.0 / 15.0)
    # stress: 9 (w 1) and 1 (w 2) over 2 frames * 9 components -> 11 / 18
    assert terms["stress"].item() == pytest.approx(11.0 / 18.0)
    assert total.item() == pytest.approx(4.5 + 10 * 9 / 15 + 100 * 11 / 18)
    assert "virials" not in terms


def test_missing_labels_contribute_nothing():
    loss = WeightedLoss("mse", LossWeights(energy=1.0, forces=1.0, stress=1.0))
    _, terms = loss(_batch(has_energy=(True, False), has_forces=(False, True), has_stress=(False, False)), _output())
    assert terms["energy"].item() == pytest.approx(1.0)  # only frame 0: 1 * 1 / 1
    assert terms["forces"].item() == pytest.approx(8.0 / 6.0)  # only frame 1: 2 * 4 / (2 atoms * 3)
    assert terms["stress"].item() == 0.0


def test_property_and_head_weights():
    batch = _batch()
    batch["energy_weight"] = torch.tensor([0.0, 1.0], dtype=D)
    batch["head"] = torch.tensor([0, 1])
    loss = WeightedLoss("mse", LossWeights(energy=1.0, forces=0.0), head_weights=[1.0, 3.0])
    _, terms = loss(batch, _output())
    # frame 0 has energy_weight 0; frame 1: weight 2 * head weight 3 * 4 -> 24 / 2 labelled frames
    assert terms["energy"].item() == pytest.approx(12.0)


def test_huber_elementwise():
    e = torch.tensor([0.005, -0.02, 0.01], dtype=D)
    got = huber(e, 0.01)
    assert got.tolist() == pytest.approx([0.5 * 0.005**2, 0.01 * (0.02 - 0.005), 0.5 * 0.01**2])


def test_force_delta_thresholds():
    norms = torch.tensor([0.0, 99.9, 100.0, 199.9, 200.0, 299.9, 300.0, 1000.0], dtype=D)
    forces = torch.zeros(len(norms), 3, dtype=D)
    forces[:, 2] = norms
    assert force_delta_factor(forces).tolist() == [1.0, 1.0, 0.7, 0.7, 0.4, 0.4, 0.1, 0.1]


def test_universal_conditional_forces_by_hand():
    batch = _batch()
    # reference force norms 50, 150, 250 (frame 0) and 350, 0 (frame 1)
    batch["forces"] = torch.tensor([[50.0, 0, 0], [0, 150.0, 0], [0, 0, 250.0], [350.0, 0, 0], [0, 0, 0]], dtype=D)
    out = _output()
    out["forces"] = batch["forces"].clone()
    out["forces"][:4, 0] += 0.005  # error 0.005 on x of the first four atoms
    loss = WeightedLoss("universal", LossWeights(energy=0.0, forces=1.0), huber_delta=0.01)
    _, terms = loss(batch, out)
    # deltas 0.01, 0.007, 0.004, 0.001:
    q = 0.5 * 0.005**2  # 1.25e-5 for delta 0.01 and 0.007
    lin4 = 0.004 * (0.005 - 0.002)  # 1.2e-5
    lin1 = 0.001 * (0.005 - 0.0005)  # 4.5e-6
    expected = (q + q + lin4 + 2.0 * lin1) / 15.0  # atom 3 is in frame 1 (weight 2)
    assert terms["forces"].item() == pytest.approx(expected, rel=1e-12)


def test_universal_energy_and_stress_are_huber():
    loss = WeightedLoss("universal", LossWeights(energy=1.0, forces=0.0, stress=1.0), huber_delta=0.5)
    _, terms = loss(_batch(), _output())
    # energy/atom errors 1 and 2, delta 0.5: 0.5*(1-0.25)=0.375 and 0.5*(2-0.25)=0.875 (weight 2)
    assert terms["energy"].item() == pytest.approx((0.375 + 2 * 0.875) / 2)
    # stress errors 3 (w 1) and 1 (w 2): 0.5*(3-0.25)=1.375, 0.5*(1-0.25)=0.375
    assert terms["stress"].item() == pytest.approx((1.375 + 2 * 0.375) / 18)


def test_loss_gradient_flows_and_is_finite():
    out = _output()
    out["energy"] = out["energy"].clone().requires_grad_(True)
    loss = WeightedLoss("huber", LossWeights(energy=1.0, forces=1.0))
    total, _ = loss(_batch(), out)
    total.backward()
    assert math.isfinite(total.item())
    # Huber gradient in the linear regime: delta * sign / n_atoms * weight / 2 frames
    assert out["energy"].grad.tolist() == pytest.approx([0.01 / 3 / 2, 2 * 0.01 / 2 / 2])
