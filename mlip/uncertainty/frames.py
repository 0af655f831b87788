"""Per-frame predictions with uncertainty for lists of structures, and energy differences along a path.

``potential`` below is an :class:`~mlip.uncertainty.llpr.LLPRPotential` or a
:class:`~mlip.uncertainty.committee.CommitteePotential` (both have ``.model`` and the same outputs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mlip.data.configuration import Configuration
from mlip.errors import ConfigError
from mlip.uncertainty.llpr import iter_batches


def to_configuration(structure: Any, head: str | None = None) -> Configuration:
    """A label-free :class:`Configuration` of an ASE ``Atoms`` (a Configuration is passed through, head set)."""
    if isinstance(structure, Configuration):
        config = dataclasses.replace(structure)
    else:
        config = Configuration(numbers=np.asarray(structure.numbers), positions=np.asarray(structure.positions),
                               cell=np.asarray(structure.cell), pbc=np.asarray(structure.pbc))
    if head is not None:
        config.head = head
    return config


def _head(potential: Any, head: str | None) -> str | None:
    heads = list(potential.model.heads)
    if head is not None and head not in heads:
        raise ConfigError(f"unknown head {head!r}; the model's heads are {heads}")
    if head is None and len(heads) == 1:
        return heads[0]
    return head


def predict_frames(
    potential: Any,
    structures: Sequence[Any],
    head: str | None = None,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    compute_forces: bool = True,
) -> list[dict[str, Any]]:
    """One dict per structure: ``energy``, ``energy_uncertainty`` (eV), and with forces ``forces`` [N, 3],
    ``forces_uncertainty`` [N] (eV/A, per-atom norm), ``forces_variance`` [N, 3] (eV^2/A^2) and
    ``forces_rmse_uncertainty`` (eV/A: ``sqrt(mean over components of the variance)``, the predicted
    force RMSE of the frame). Stress is not computed here (use the calculator for one cell)."""
    head = _head(potential, head)
    configs = [to_configuration(s, head) for s in structures]
    frames: list[dict[str, Any]] = []
    for batch in iter_batches(potential.model, configs, batch_size, device):
        out = potential(batch, compute_stress=False, compute_forces=compute_forces)
        ptr = batch["ptr"].tolist()
        for b in range(len(ptr) - 1):
            frame = {"energy": float(out["energy"][b]), "energy_uncertainty": float(out["energy_uncertainty"][b])}
            if compute_forces:
                atoms = slice(ptr[b], ptr[b + 1])
                var = out["forces_variance"][atoms].double().cpu().numpy()
                frame.update(forces=out["forces"][atoms].double().cpu().numpy(), forces_variance=var,
                             forces_uncertainty=np.sqrt(var.sum(axis=1)),
                             forces_rmse_uncertainty=float(np.sqrt(var.mean())))
            frames.append(frame)
    return frames


def energy_difference_uncertainty(
    potential: Any, structures: Sequence[Any], head: str | None = None, batch_size: int = 8,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Energies [n] (eV) and ``sigma(E_i - E_j)`` [n, n] (eV) of ``structures`` (e.g. NEB images).

    LLPR: ``sigma(E_i - E_j) = alpha sqrt((f_i - f_j)^T (H0 + lambda I)^-1 (f_i - f_j))``; committee: the
    spread of the members' differences. Both from the energy covariance ``C_ij = z_i . z_j`` (``z`` = the
    potential's ``proj``), ``sigma_ij^2 = C_ii + C_jj - 2 C_ij``, so correlated errors cancel.
    """
    head = _head(potential, head)
    configs = [to_configuration(s, head) for s in structures]
    energies, z = [], []
    for batch in iter_batches(potential.model, configs, batch_size, device):
        out = potential(batch, compute_stress=False, compute_forces=False)
        energies.append(out["energy"].double().cpu())
        z.append(out["proj"].double().cpu())
    zz = torch.cat(z)
    cov = zz @ zz.T
    diag = torch.diagonal(cov)
    sigma = (diag[:, None] + diag[None, :] - 2.0 * cov).clamp_min(0.0).sqrt()
    return torch.cat(energies).numpy(), sigma.numpy()
