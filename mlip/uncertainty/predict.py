"""One model evaluation giving energy, forces, stress, last-layer features and their derivatives.

:func:`evaluate_with_features` runs the model's forward once on a (strained) batch with the readout hooks
of :mod:`mlip.uncertainty.features`, then takes

* forces ``-dE/dr`` and stress ``(1/V) dE/d eps`` (as :func:`mlip.inference.energy_forces_stress`);
* for given directions ``M_b`` [P, K] per structure, the projections ``z_b = f_b^T M_b`` [K] and their
  derivatives ``-dz/dr`` [K, N, 3] and ``(1/V) dz/d eps`` [K, B, 3, 3] by K vector-Jacobian products
  (a loop on CPU; batched with ``torch.autograd.grad(..., is_grads_batched=True)`` on CUDA).

With ``M = L`` (a Cholesky factor of the weight covariance ``alpha^2 (H0 + lambda I)^-1``) the squared
projections summed over K are the LLPR variances of energy, force components and stress components.
"""

from __future__ import annotations

import torch

from mlip.data import keys
from mlip.inference import strain_batch
from mlip.device import model_dtype
from mlip.uncertainty.features import capture_features, structure_features

BATCHED_VJP: bool | None = None
"""Default of :func:`_batched_vjp`'s ``batched`` (None: vmap on CUDA, loop elsewhere); a benchmarking switch."""


def _volumes(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(1/V or 0 for non-periodic graphs [B], periodic mask [B])."""
    cell = batch[keys.CELL].reshape(-1, 3, 3)
    volume = torch.linalg.det(cell).abs()
    periodic = volume > 0
    if keys.PBC in batch:
        periodic = periodic & batch[keys.PBC].reshape(-1, 3).any(dim=1)
    inv = torch.where(periodic, 1.0 / torch.where(periodic, volume, torch.ones_like(volume)), torch.zeros_like(volume))
    return inv, periodic


def _batched_vjp(
    outputs: torch.Tensor, inputs: list[torch.Tensor], k: int, batched: bool | None = None
) -> list[torch.Tensor]:
    """``d outputs[:, j] / d inputs`` for j < k, stacked on a new leading dim (K backward passes).

    On CUDA the K passes are batched with ``is_grads_batched`` (vmap); on CPU a plain loop, which measured
    faster there (docs/benchmarks.md "Uncertainty"). ``batched`` (or :data:`BATCHED_VJP`) forces one or the other.
    """
    eye = torch.eye(k, dtype=outputs.dtype, device=outputs.device)
    grad_outputs = eye.unsqueeze(1).expand(k, outputs.shape[0], k)  # [K, B, K]
    if batched is None:
        batched = BATCHED_VJP
    if batched if batched is not None else outputs.device.type == "cuda":
        try:
            grads = torch.autograd.grad(outputs, inputs, grad_outputs=grad_outputs.contiguous(),
                                        retain_graph=True, is_grads_batched=True, allow_unused=True)
            return [torch.zeros((k, *x.shape), dtype=x.dtype, device=x.device) if g is None else g
                    for g, x in zip(grads, inputs)]
        except RuntimeError:  # an op without a batching rule: fall back to the loop
            pass
    rows: list[list[torch.Tensor]] = [[] for _ in inputs]
    for j in range(k):
        gs = torch.autograd.grad(outputs, inputs, grad_outputs=grad_outputs[j].contiguous(),
                                 retain_graph=True, allow_unused=True)
        for r, g, x in zip(rows, gs, inputs):
            r.append(torch.zeros_like(x) if g is None else g)
    return [torch.stack(r) for r in rows]


def evaluate_with_features(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    directions: torch.Tensor | None = None,
    compute_forces: bool = True,
    compute_stress: bool = False,
) -> dict[str, torch.Tensor]:
    """Evaluate ``model`` on ``batch`` and return detached tensors.

    Args:
        directions: ``[B, P, K]`` matrices ``M_b`` (or None): adds ``proj`` [B, K] ``= f_b^T M_b`` and, with
            ``compute_forces``, ``proj_forces`` [K, N, 3] ``= -d proj / d r`` (eV/A when ``proj`` is in eV);
            with ``compute_stress`` also ``proj_stress`` [K, B, 3, 3] ``= (1/V) d proj / d eps`` (zero for
            non-periodic graphs).

    Returns ``energy`` [B] (eV), ``node_energy`` [N], ``features`` [B, P], and ``forces`` [N, 3],
    ``stress`` [B, 3, 3] (eV/A^3, ASE sign) as asked.
    """
    dtype = model_dtype(model)
    num_graphs = batch[keys.PTR].shape[0] - 1
    positions = batch[keys.POSITIONS].detach().to(dtype).requires_grad_(compute_forces)
    displacement = torch.zeros((num_graphs, 3, 3), dtype=dtype, device=positions.device,
                               requires_grad=compute_stress)
    inputs = dict(batch)
    inputs[keys.POSITIONS] = positions
    inputs[keys.CELL] = batch[keys.CELL].reshape(-1, 3, 3).to(dtype)
    leaves = ([positions] if compute_forces else []) + ([displacement] if compute_stress else [])
    with torch.set_grad_enabled(bool(leaves)):
        strained = strain_batch(inputs, displacement) if compute_stress else inputs
        with capture_features(model) as captured:
            out = model(strained, compute_forces=False, compute_stress=False, training=False)
        features = structure_features(model, batch, captured)
        result = {keys.ENERGY: out[keys.ENERGY].detach(), keys.NODE_ENERGY: out[keys.NODE_ENERGY].detach(),
                  keys.FEATURES: features.detach()}
        inv_volume, periodic = _volumes(inputs)
        if leaves:
            grads = torch.autograd.grad(out[keys.ENERGY].sum(), leaves, retain_graph=directions is not None,
                                        allow_unused=True)
            grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves)]
            if compute_forces:
                result[keys.FORCES] = -grads[0].detach()
            if compute_stress:
                result[keys.VIRIALS] = -grads[-1].detach()
                result[keys.STRESS] = grads[-1].detach() * inv_volume[:, None, None]
        if directions is not None:
            proj = torch.einsum("bp,bpk->bk", features, directions.to(features.dtype))
            result[keys.PROJ] = proj.detach()
            if leaves:
                grads = _batched_vjp(proj, leaves, proj.shape[1])
                if compute_forces:
                    result[keys.PROJ_FORCES] = -grads[0].detach()
                if compute_stress:
                    result[keys.PROJ_STRESS] = grads[-1].detach() * inv_volume[None, :, None, None]
    if compute_stress:
        result[keys.PERIODIC] = periodic
    return result
