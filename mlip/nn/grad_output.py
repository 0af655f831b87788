"""Forces, stress and virials by automatic differentiation of the energy: the one copy of that code.

Used by the model's own forward (:meth:`mlip.nn.model.MACE.forward`) and by the inference paths
(:mod:`mlip.inference`, :mod:`mlip.uncertainty`). Conventions (docs/architecture.md):

* forces ``F = -dE/dr`` ``[N,3]`` (eV/A);
* a symmetric strain ``eps = sym(displacement)`` ``[B,3,3]`` applied to row-vector positions and to
  the cell, ``r' = r (1 + eps)``, ``cell' = cell (1 + eps)``, evaluated at ``displacement = 0``;
* virials ``W = -dE/d(eps)`` ``[B,3,3]`` (eV) and stress ``sigma = (1/V) dE/d(eps)`` ``[B,3,3]`` (eV/A^3,
  ASE's sign); graphs without a periodic direction, or with zero volume, get zero stress.
"""

from __future__ import annotations

import torch

from mlip.data import keys

__all__ = ["energy_gradients", "strain", "stress_and_virials", "zero_displacement"]


def zero_displacement(num_graphs: int, like: torch.Tensor) -> torch.Tensor:
    """A zero ``[B,3,3]`` displacement (dtype/device of ``like``) that requires grad: the strain handle."""
    return torch.zeros((num_graphs, 3, 3), dtype=like.dtype, device=like.device, requires_grad=True)


def strain(
    positions: torch.Tensor, cell: torch.Tensor, node_graph: torch.Tensor, displacement: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions ``[N,3]`` and cells ``[B,3,3]`` strained by ``1 + sym(displacement)`` of their graph.

    ``node_graph [N]`` is the graph index of each atom (the batch key ``batch``).
    """
    eps = 0.5 * (displacement + displacement.transpose(1, 2))
    strained_positions = positions + torch.einsum("ni,nij->nj", positions, eps[node_graph])
    return strained_positions, cell + torch.bmm(cell, eps)


def stress_and_virials(
    de_deps: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(stress, virials)`` ``[B,3,3]`` from ``dE/d(eps)`` ``[B,3,3]``, the unstrained cells and ``pbc [B,3]``.

    Stress is zero where the volume is zero or (with ``pbc``) no direction is periodic.
    """
    volume = torch.linalg.det(cell).abs()
    if pbc is not None:  # non-periodic graphs report zero stress
        volume = torch.where(pbc.reshape(-1, 3).any(dim=1), volume, torch.zeros_like(volume))
    safe = torch.where(volume > 0, volume, torch.ones_like(volume))
    stress = torch.where((volume > 0).view(-1, 1, 1), de_deps / safe.view(-1, 1, 1), torch.zeros_like(de_deps))
    return stress, -de_deps


def energy_gradients(
    energy: torch.Tensor,
    positions: torch.Tensor | None,
    displacement: torch.Tensor | None,
    cell: torch.Tensor | None = None,
    pbc: torch.Tensor | None = None,
    create_graph: bool = False,
) -> dict[str, torch.Tensor]:
    """Differentiate the graph energies ``energy [B]`` (their sum) once.

    Returns ``forces [N,3]`` when ``positions`` (the leaf the energy was built from) is given and
    ``stress``/``virials [B,3,3]`` when ``displacement`` (from :func:`zero_displacement`, used in
    :func:`strain`) and the unstrained ``cell [B,3,3]`` are given. An input the energy does not depend on
    gets zero derivatives. ``create_graph`` keeps the graph for losses on forces/stress (training).
    """
    inputs = [t for t in (positions, displacement) if t is not None]
    if not inputs:
        return {}
    grads = torch.autograd.grad(
        [energy.sum()], inputs, create_graph=create_graph, retain_graph=create_graph, allow_unused=True
    )
    grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]
    out: dict[str, torch.Tensor] = {}
    if positions is not None:
        out[keys.FORCES] = -grads[0]
    if displacement is not None:
        if cell is None:
            raise ValueError("energy_gradients: stress needs the unstrained cell")
        out[keys.STRESS], out[keys.VIRIALS] = stress_and_virials(grads[-1], cell, pbc)
    return out
