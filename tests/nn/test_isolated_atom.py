"""An atom with no neighbour within r_max has exactly its head's E0 (first layer without skip, shift 0).

This is mace-torch's ``--model MACE`` behaviour (plain or density first layer, ``atomic_inter_shift`` 0)
and what ``model.shifting: none`` gives in a config: the first layer's messages are empty sums, its
product basis has no constant term and no skip connection, so every later feature, the readouts and
the pair term are exactly zero. Approaching the cutoff the energy goes to the sum of E0s smoothly (the
envelope), so dissociation curves end at the isolated-atom energies instead of ``E0 + shift``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from graphs import make_batch
from small_models import COMMON

from mlip.nn.hparams import ModelHyperparameters
from mlip.nn.model import build_model

NO_CELL = (np.zeros((3, 3)), np.array([False] * 3))
FIRST_LAYERS = {
    "plain": dict(atomic_numbers=[1, 6, 8], interaction="residual", interaction_first="plain"),
    "density_zbl": dict(atomic_numbers=[14, 42], interaction="density_residual", interaction_first="density",
                        pair_repulsion=True, distance_transform="agnesi"),
}


def _model(variant: str, shift: float, dtype=torch.float64):
    hp = ModelHyperparameters(**COMMON, **FIRST_LAYERS[variant], scale=[1.7], shift=[shift])
    hp = dataclasses.replace(hp, atomic_energies=[[-13.6 - 7.0 * i for i in range(len(hp.atomic_numbers))]])
    torch.manual_seed(5)
    model = build_model(hp, dtype=torch.float64)
    with torch.no_grad():  # weights far from their initial values, every one non-zero
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p) + 0.1)
    return model.to(dtype), hp


def _energies(model, structures, dtype=torch.float64):
    b = make_batch(structures, model.r_max, dtype=dtype)
    out = model(b, compute_forces=True)
    return out["energy"].detach().numpy(), out["forces"].detach().numpy(), out["node_energy"].detach().numpy()


@pytest.mark.parametrize("variant", list(FIRST_LAYERS))
def test_lone_atom_energy_is_exactly_e0(variant):
    model, hp = _model(variant, shift=0.0)
    zs, e0 = hp.atomic_numbers, hp.atomic_energies[0]
    singles = [(np.array([z]), np.zeros((1, 3)), *NO_CELL) for z in zs]
    far = [(np.array([zs[0], zs[-1]]), np.array([[0.0, 0, 0], [COMMON["r_max"] + 0.01, 0.3, 0]]), *NO_CELL)]
    energy, forces, node = _energies(model, singles + far)
    assert energy[: len(zs)].tolist() == e0  # bit for bit
    assert energy[-1] == e0[0] + e0[-1]
    assert np.all(forces == 0.0)
    # the same molecule-like pair well inside the cutoff does interact
    near = [(np.array([zs[0], zs[-1]]), np.array([[0.0, 0, 0], [0.6 * COMMON["r_max"], 0.3, 0]]), *NO_CELL)]
    assert abs(_energies(model, near)[0][0] - (e0[0] + e0[-1])) > 1e-3


@pytest.mark.parametrize("variant", list(FIRST_LAYERS))
def test_dissociation_goes_smoothly_to_the_e0_sum(variant):
    model, hp = _model(variant, shift=0.0)
    zs, e0 = hp.atomic_numbers, hp.atomic_energies[0]
    r_max = COMMON["r_max"]
    gaps = np.array([1e-1, 3e-2, 1e-2, 3e-3])
    pairs = [(np.array([zs[0], zs[-1]]), np.array([[0.0, 0, 0], [r_max - g, 0, 0]]), *NO_CELL) for g in gaps]
    energy, _, _ = _energies(model, pairs)
    excess = np.abs(energy - (e0[0] + e0[-1]))
    assert excess[0] > 1e-9  # still bound at 0.1 A inside
    assert np.all(np.diff(excess) < 0)  # vanishes as the gap closes
    assert excess[-1] < 1e-6


def test_shift_is_what_a_lone_atom_gets_with_shifting_mean():
    model, hp = _model("plain", shift=-0.75)
    singles = [(np.array([z]), np.zeros((1, 3)), *NO_CELL) for z in hp.atomic_numbers]
    energy, _, _ = _energies(model, singles)
    np.testing.assert_allclose(energy, np.array(hp.atomic_energies[0]) - 0.75, rtol=0, atol=1e-12)


def test_lone_atom_e0_in_float32():
    model, hp = _model("plain", shift=0.0, dtype=torch.float32)
    singles = [(np.array([z]), np.zeros((1, 3)), *NO_CELL) for z in hp.atomic_numbers]
    energy, _, _ = _energies(model, singles, dtype=torch.float32)
    assert energy.dtype == np.float64  # energies are summed and returned in float64
    assert energy.tolist() == hp.atomic_energies[0]
