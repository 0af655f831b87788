"""Tiny models and structures for the uncertainty tests (seconds each)."""

from __future__ import annotations

import numpy as np
import torch

from mlip.data.configuration import Configuration
from mlip.nn.hparams import ModelHyperparameters
from mlip.nn.model import build_model, refresh_wigner_buffers

ELEMENTS = [1, 6, 8]


def tiny_model(seed: int = 0, heads: tuple[str, ...] = ("Default",), zbl: bool = False) -> torch.nn.Module:
    """Two interactions, 4x0e+4x1o, MLP readout 4x0e; weights moved off their initial values (float64)."""
    h = len(heads)
    hp = ModelHyperparameters(
        atomic_numbers=ELEMENTS, r_max=3.0, num_bessel=4, num_polynomial_cutoff=5, max_ell=1,
        hidden_irreps="4x0e + 4x1o", num_interactions=2, correlation=2, radial_mlp=[8],
        mlp_irreps="4x0e", avg_num_neighbors=3.0, interaction="residual", interaction_first="plain",
        heads=list(heads), scale=[1.3 - 0.2 * k for k in range(h)], shift=[0.1 * k - 0.05 for k in range(h)],
        atomic_energies=[[-1.0 - 0.1 * i - k for i in range(3)] for k in range(h)], pair_repulsion=zbl,
    )
    torch.manual_seed(seed)
    model = build_model(hp, dtype=torch.float64)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    refresh_wigner_buffers(model)
    return model.eval()


def molecule(rng: np.random.Generator, n: int = 5, head: str = "Default", labels: bool = False) -> Configuration:
    """A random non-periodic cluster of ``n`` atoms (min distance > 0.8 A), optionally with random labels."""
    pos = [rng.uniform(0, 2.0, 3)]
    while len(pos) < n:
        trial = pos[rng.integers(len(pos))] + rng.normal(0, 1.0, 3)
        if min(np.linalg.norm(trial - p) for p in pos) > 0.8:
            pos.append(trial)
    c = Configuration(numbers=rng.choice(ELEMENTS, n), positions=np.array(pos), head=head)
    if labels:
        c.energy = float(rng.normal(-5.0, 1.0))
        c.forces = rng.normal(0, 0.5, (n, 3))
    return c


def crystal(rng: np.random.Generator, n: int = 4) -> Configuration:
    """A small distorted periodic cell (all three directions periodic)."""
    cell = np.diag([3.2, 3.4, 3.0]) + 0.1 * rng.normal(size=(3, 3))
    frac = (np.arange(n)[:, None] * np.array([0.37, 0.61, 0.23]) + rng.uniform(0, 0.1, (n, 3))) % 1.0
    return Configuration(numbers=rng.choice(ELEMENTS, n), positions=frac @ cell, cell=cell, pbc=np.ones(3, bool))


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A proper rotation matrix (QR of a Gaussian matrix, det +1)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q
