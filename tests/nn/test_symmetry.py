"""O(3) invariance/equivariance, translation and permutation invariance (float64, 1e-10 relative)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from graphs import make_batch
from small_models import VARIANTS, small_model

RTOL = 1e-10


def _random_o3(rng, reflect):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return -q if reflect else q  # -q has det -1 (a rotation times the inversion)


def _structure(name, rng, periodic):
    numbers = np.array([14, 42, 14, 42, 14]) if name == "density_zbl_agnesi" else np.array([6, 1, 8, 1, 6])
    if periodic:
        cell = np.array([[4.2, 0.3, 0.0], [0.2, 4.0, 0.4], [0.1, 0.3, 4.4]])
        frac = rng.uniform(size=(5, 3))
        pos = frac @ cell
    else:
        cell = np.zeros((3, 3))
        pos = rng.normal(scale=1.0, size=(5, 3))
    return numbers, pos, cell, np.array([periodic] * 3)


def _eval(model, structure, head=0):
    b = make_batch([structure], model.r_max, heads=[head])
    out = model(b, compute_forces=True, compute_stress=True)
    return {k: out[k].detach() for k in ("energy", "forces", "stress", "node_energy", "node_feats")}


def _close(a, b):
    scale = max(float(torch.as_tensor(b).abs().max()), 1e-3)
    assert float((torch.as_tensor(a) - torch.as_tensor(b)).abs().max()) <= RTOL * scale


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("periodic", [False, True])
def test_o3_translation_permutation(name, periodic):
    rng = np.random.default_rng(1)
    model = small_model(name)
    s = _structure(name, rng, periodic)
    ref = _eval(model, s, head=len(model.heads) - 1)
    assert float(ref["forces"].abs().max()) > 1e-4  # non-trivial
    numbers, pos, cell, pbc = s
    for reflect in (False, True):
        Q = _random_o3(rng, reflect)
        t = rng.normal(size=3)
        out = _eval(model, (numbers, pos @ Q.T + t, cell @ Q.T, pbc), head=len(model.heads) - 1)
        _close(out["energy"], ref["energy"])
        _close(out["node_energy"], ref["node_energy"])
        _close(out["node_feats"], ref["node_feats"])  # invariant descriptors
        Qt = torch.tensor(Q)
        _close(out["forces"], ref["forces"] @ Qt.T)
        _close(out["stress"][0], Qt @ ref["stress"][0] @ Qt.T)
    perm = rng.permutation(len(numbers))
    out = _eval(model, (numbers[perm], pos[perm], cell, pbc), head=len(model.heads) - 1)
    _close(out["energy"], ref["energy"])
    _close(out["forces"], ref["forces"][perm])
    _close(out["node_energy"], ref["node_energy"][perm])
    _close(out["stress"], ref["stress"])
