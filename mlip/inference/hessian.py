"""The analytic Hessian of a model's energy with respect to atomic positions, by double backward.

``H[3i+a, 3j+b] = d^2 E / (dr_ia dr_jb)`` (eV/A^2) of one structure. The first derivative is taken with
``create_graph=True``; each block of ``chunk`` rows is then one batched backward pass, so memory holds the graph
of one energy+forces call plus ``chunk`` rows. For a periodic cell this is the Gamma-point (supercell) force-constant
matrix: periodic images move with their atom, exactly as finite displacements of the cell's atoms do.
"""

from __future__ import annotations

import torch

from mlip.data import keys

__all__ = ["hessian"]


def hessian(model: torch.nn.Module, batch: dict[str, torch.Tensor], chunk: int = 16) -> torch.Tensor:
    """``[3N, 3N]`` float64 Hessian (eV/A^2) of the one-graph ``batch`` (the calculator's ``make_batch``).

    ``chunk`` rows are computed per backward pass (``is_grads_batched``); memory grows with it. The result is
    symmetrised (the two halves agree to round-off).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    positions = batch[keys.POSITIONS].detach().clone().requires_grad_(True)
    inputs = dict(batch)
    inputs[keys.POSITIONS] = positions
    with torch.enable_grad():
        out = model(inputs, compute_forces=False, compute_stress=False, training=False)
        (gradient,) = torch.autograd.grad(out[keys.ENERGY].sum(), positions, create_graph=True)
        flat = gradient.reshape(-1)
        size = flat.numel()
        rows = torch.empty((size, size), dtype=torch.float64, device=positions.device)
        for start in range(0, size, chunk):
            stop = min(start + chunk, size)
            seeds = torch.zeros((stop - start, size), dtype=flat.dtype, device=flat.device)
            seeds[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
            (block,) = torch.autograd.grad(flat, positions, grad_outputs=seeds, retain_graph=True,
                                           is_grads_batched=True, allow_unused=True)
            rows[start:stop] = 0.0 if block is None else block.reshape(stop - start, size).double()
    return 0.5 * (rows + rows.T)
