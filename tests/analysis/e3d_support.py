"""Helpers for the E3D tests: tiny float64 models and brute-force molecular batches (no mlip.data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mlip.nn.hparams import ModelHyperparameters
from mlip.nn.model import build_model

REPO = Path(__file__).resolve().parents[2]
ACAC = REPO / "data" / "acac" / "train.xyz"
E0 = {1: -13.568, 6: -1026.854, 8: -2037.797}


def tiny_model(seed: int = 0, **options) -> torch.nn.Module:
    """A small random float64 model for H, C, O with nonzero shift/scale and E0s."""
    torch.manual_seed(seed)
    kw = dict(
        atomic_numbers=[1, 6, 8], atomic_energies=[[E0[1], E0[6], E0[8]]], r_max=4.0, num_bessel=6,
        hidden_irreps="6x0e + 6x1o", max_ell=1, correlation=2, radial_mlp=[12], mlp_irreps="6x0e",
        avg_num_neighbors=4.0, scale=[1.3], shift=[-0.4],
    )
    kw.update(options)
    model = build_model(ModelHyperparameters(**kw), dtype=torch.float64)
    if kw.get("edge_energy_readout"):
        with torch.no_grad():  # make the readout depend clearly on the inputs (default init is mild)
            for p in model.edge_readout.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def molecule_batch(structures, r_max: float, extra_cutoff: float | None = None) -> dict[str, torch.Tensor]:
    """Batch of non-periodic molecules ``[(numbers, positions), ...]`` with every ordered pair closer
    than ``extra_cutoff or r_max`` as an edge (brute force)."""
    cut = extra_cutoff or r_max
    pos, num, bat, ei, ptr = [], [], [], [], [0]
    for g, (numbers, positions) in enumerate(structures):
        positions = np.asarray(positions, dtype=np.float64)
        d = np.linalg.norm(positions[None] - positions[:, None], axis=-1)
        s, r = np.nonzero((d < cut) & ~np.eye(len(numbers), dtype=bool))
        ei.append(np.stack([s, r]) + ptr[-1])
        pos.append(positions)
        num.append(np.asarray(numbers))
        bat.append(np.full(len(numbers), g))
        ptr.append(ptr[-1] + len(numbers))
    n_graphs = len(structures)
    edge_index = torch.tensor(np.concatenate(ei, axis=1), dtype=torch.long)
    return {
        "positions": torch.tensor(np.concatenate(pos), dtype=torch.float64),
        "numbers": torch.tensor(np.concatenate(num), dtype=torch.long),
        "batch": torch.tensor(np.concatenate(bat), dtype=torch.long),
        "ptr": torch.tensor(ptr, dtype=torch.long),
        "edge_index": edge_index,
        "unit_shifts": torch.zeros(edge_index.shape[1], 3, dtype=torch.float64),
        "cell": torch.zeros(n_graphs, 3, 3, dtype=torch.float64),
        "pbc": torch.zeros(n_graphs, 3, dtype=torch.bool),
        "head": torch.zeros(n_graphs, dtype=torch.long),
    }


def acetylacetone() -> tuple[np.ndarray, np.ndarray]:
    """First frame of the bundled acac slice (numbers, positions), or a random C/H/O cluster if absent."""
    if ACAC.is_file():
        import ase.io

        atoms = ase.io.read(ACAC, index=0)
        return atoms.numbers.copy(), atoms.positions.copy()
    rng = np.random.default_rng(1)
    return np.array([6, 6, 6, 8, 8, 1, 1, 1]), rng.normal(size=(8, 3)) * 1.3


def random_rotation(seed: int = 0) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q
