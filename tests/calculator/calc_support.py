"""Test support: a small MACE builder, an Si cell, and a differentiable Morse pair potential implementing the model forward contract of
docs/architecture.md (energy, node_energy, forces, stress/virials via a strain derivative).

Used to test the calculator's plumbing independently of the MACE model, and as an independent
reference: its energy can be written by hand (see ``morse_energy``).
"""

from __future__ import annotations

import numpy as np
import torch


class MorsePairModel(torch.nn.Module):
    """E = sum_i E0[head, Z_i] + 1/2 sum_{directed edges} D_head (e^{-2a(d-r0)} - 2 e^{-a(d-r0)}) f_cut(d).

    ``f_cut`` is the polynomial envelope (p=5) of Bessel-MACE, exactly zero at ``r_max``.
    """

    def __init__(self, atomic_numbers=(1, 6, 8, 14), heads=("Default", "other"), r_max=4.0) -> None:
        super().__init__()
        self.atomic_numbers = list(atomic_numbers)
        self.heads = list(heads)
        self.r_max = float(r_max)
        self.depth = torch.nn.Parameter(torch.tensor([1.0, 0.7], dtype=torch.float64)[: len(heads)])
        self.alpha = torch.nn.Parameter(torch.tensor(1.3, dtype=torch.float64))
        self.r0 = torch.nn.Parameter(torch.tensor(2.35, dtype=torch.float64))
        e0 = torch.arange(len(heads) * len(atomic_numbers), dtype=torch.float64).reshape(len(heads), -1)
        self.register_buffer("e0", -1.0 - 0.1 * e0)
        table = torch.full((max(atomic_numbers) + 1,), -1, dtype=torch.long)
        table[list(atomic_numbers)] = torch.arange(len(atomic_numbers))
        self.register_buffer("z_table", table)

    def envelope(self, d: torch.Tensor) -> torch.Tensor:
        x = d / self.r_max
        p = 5.0
        f = 1 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)
        return f * (x < 1)

    def forward(self, batch, compute_forces=True, compute_stress=False, training=False):
        positions = batch["positions"]
        cell = batch["cell"]
        graph = batch["batch"]
        num_graphs = batch["ptr"].shape[0] - 1
        displacement = None
        if compute_forces or compute_stress:
            positions = positions.detach().requires_grad_(True) if not positions.requires_grad else positions
        if compute_stress:
            displacement = torch.zeros_like(cell).requires_grad_(True)
            eps = 0.5 * (displacement + displacement.transpose(1, 2))
            positions = positions + torch.einsum("ni,nij->nj", positions, eps[graph])
            cell = cell + cell @ eps
        s, r = batch["edge_index"]
        vectors = positions[r] - positions[s] + torch.einsum("ei,eij->ej", batch["unit_shifts"], cell[graph[s]])
        d = vectors.norm(dim=-1)
        head = batch["head"][graph]
        depth = self.depth[head[r]]
        u = torch.exp(-self.alpha * (d - self.r0))
        pair = depth * (u * u - 2 * u) * self.envelope(d)
        node = self.e0[head, self.z_table[batch["numbers"]]]
        node = node + 0.5 * torch.zeros_like(node).index_add(0, r, pair)
        energy = torch.zeros(num_graphs, dtype=node.dtype, device=node.device).index_add(0, graph, node)
        out = {"energy": energy, "node_energy": node, "interaction_energy": energy}
        if compute_forces or compute_stress:
            wrt = [positions] if displacement is None else [positions, displacement]
            grads = torch.autograd.grad(energy.sum(), wrt, create_graph=training, allow_unused=True)
            # forces are -dE/dr at fixed strain; with strain applied, r' = r(1+eps) and eps=0.
            out["forces"] = -grads[0] if grads[0] is not None else torch.zeros_like(positions)
            if displacement is not None:
                de = grads[1]
                volume = torch.linalg.det(batch["cell"]).abs()
                out["virials"] = -de
                periodic = batch["pbc"].any(dim=-1)
                safe = torch.where(periodic, volume, torch.ones_like(volume))
                out["stress"] = torch.where(periodic[:, None, None], de / safe[:, None, None], 0.0 * de)
        return out


def morse_energy(model: MorsePairModel, atoms, head: int = 0) -> float:
    """Brute-force reference energy with ASE's neighbour list (numpy, float64)."""
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, model.r_max)
    dep = float(model.depth[head].detach())
    a = float(model.alpha.detach())
    r0 = float(model.r0.detach())
    u = np.exp(-a * (d - r0))
    x = d / model.r_max
    f = 1 - 21 * x**5 + 35 * x**6 - 15 * x**7
    pair = 0.5 * np.sum(dep * (u * u - 2 * u) * f)
    e0 = model.e0[head].numpy()
    idx = [model.atomic_numbers.index(z) for z in atoms.numbers]
    return float(pair + e0[idx].sum())


def small_mace(atomic_numbers=(1, 6, 8, 14), heads=("Default",), r_max=4.0, seed=0) -> torch.nn.Module:
    """A small MACE model (with ZBL) with random (perturbed) weights, float64."""
    from mlip.nn.hparams import ModelHyperparameters
    from mlip.nn.model import build_model

    n = len(atomic_numbers)
    hparams = ModelHyperparameters(
        atomic_numbers=list(atomic_numbers),
        heads=list(heads),
        atomic_energies=[[-1.0 - 0.5 * i - 0.1 * h for i in range(n)] for h in range(len(heads))],
        scale=[1.0] * len(heads),
        shift=[0.0] * len(heads),
        avg_num_neighbors=8.0,
        r_max=r_max,
        num_bessel=4,
        max_ell=2,
        hidden_irreps="8x0e + 8x1o",
        num_interactions=2,
        correlation=2,
        radial_mlp=[16, 16],
        mlp_irreps="8x0e",
        pair_repulsion=True,  # ZBL keeps random-weight cells from collapsing in relaxations
    )
    generator = torch.Generator().manual_seed(seed)
    model = build_model(hparams, dtype=torch.float64)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return model


def si_cell(repeat=(2, 2, 2), rattle=0.05, seed=1):
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.43, cubic=True) * repeat
    atoms.rattle(rattle, seed=seed)
    return atoms
