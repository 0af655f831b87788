"""Test helpers: brute-force neighbour lists and batches (independent of mlip.data)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mace"
VARIANTS = ["off_residual", "mp_density_zbl_agnesi", "mh_nonlinear_two_heads", "plain_l2_corr", "single_layer"]


def brute_force_edges(positions: np.ndarray, cell: np.ndarray, pbc, r_max: float):
    """Every (s, r, S) with |p[r] - p[s] + S @ cell| < r_max, no self pair with S = 0."""
    positions = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    ranges = []
    for k in range(3):
        if pbc[k]:
            # enough images: r_max / (distance between lattice planes)
            recip = np.linalg.inv(cell).T
            h = 1.0 / np.linalg.norm(recip[:, k])
            n = int(np.ceil(r_max / h)) + 1
            ranges.append(range(-n, n + 1))
        else:
            ranges.append(range(0, 1))
    senders, receivers, shifts = [], [], []
    n_atoms = len(positions)
    for S in itertools.product(*ranges):
        S = np.array(S, dtype=np.float64)
        d = positions[None, :, :] - positions[:, None, :] + S @ cell  # [s, r]
        dist = np.linalg.norm(d, axis=-1)
        mask = dist < r_max
        if not S.any():
            mask &= ~np.eye(n_atoms, dtype=bool)
        s, r = np.nonzero(mask)
        senders.append(s)
        receivers.append(r)
        shifts.append(np.repeat(S[None], len(s), axis=0))
    return np.concatenate(senders), np.concatenate(receivers), np.concatenate(shifts)


def make_batch(structures, r_max: float, heads=None, dtype=torch.float64) -> dict[str, torch.Tensor]:
    """``structures``: list of (numbers, positions, cell, pbc); ``heads``: head index per structure."""
    keys = {k: [] for k in ("positions", "numbers", "batch", "edge_index", "unit_shifts", "cell", "pbc")}
    ptr = [0]
    for g, (numbers, positions, cell, pbc) in enumerate(structures):
        s, r, S = brute_force_edges(positions, cell, pbc, r_max)
        off = ptr[-1]
        keys["positions"].append(torch.tensor(np.asarray(positions), dtype=dtype))
        keys["numbers"].append(torch.tensor(np.asarray(numbers), dtype=torch.long))
        keys["batch"].append(torch.full((len(numbers),), g, dtype=torch.long))
        keys["edge_index"].append(torch.tensor(np.stack([s + off, r + off]), dtype=torch.long))
        keys["unit_shifts"].append(torch.tensor(S, dtype=dtype))
        keys["cell"].append(torch.tensor(np.asarray(cell), dtype=dtype).reshape(1, 3, 3))
        keys["pbc"].append(torch.tensor(np.asarray(pbc), dtype=torch.bool).reshape(1, 3))
        ptr.append(off + len(numbers))
    batch = {k: torch.cat(v, dim=1 if k == "edge_index" else 0) for k, v in keys.items()}
    batch["ptr"] = torch.tensor(ptr, dtype=torch.long)
    batch["head"] = torch.tensor(heads if heads is not None else [0] * len(structures), dtype=torch.long)
    return batch


def atoms_structures(atoms_list):
    out = []
    for a in atoms_list:
        cell = np.array(a.cell[:]) if a.pbc.any() else np.zeros((3, 3))
        out.append((a.numbers, a.positions, cell, a.pbc))
    return out
