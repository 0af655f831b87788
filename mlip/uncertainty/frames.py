"""Per-frame predictions with uncertainty for lists of structures, and energy differences along a path.

``potential`` below is an :class:`~mlip.uncertainty.llpr.LLPRPotential` or a
:class:`~mlip.uncertainty.committee.CommitteePotential` (both have ``.model`` and the same outputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mlip.data import keys
from mlip.errors import ConfigError
from mlip.inference import predict_chunks


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
    frames: list[dict[str, Any]] = []

    def call(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return potential(batch, compute_stress=False, compute_forces=compute_forces)

    for chunk, out in predict_chunks(potential.model, structures, head, batch_size, device, call=call):
        batch = chunk.batch
        ptr = batch[keys.PTR].tolist()
        for b in range(len(ptr) - 1):
            frame = {"energy": float(out[keys.ENERGY][b]), "energy_uncertainty": float(out[keys.ENERGY_UNCERTAINTY][b])}
            if compute_forces:
                atoms = slice(ptr[b], ptr[b + 1])
                var = out[keys.FORCES_VARIANCE][atoms].double().cpu().numpy()
                frame.update(forces=out[keys.FORCES][atoms].double().cpu().numpy(), forces_variance=var,
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
    energies, z = [], []

    def call(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return potential(batch, compute_stress=False, compute_forces=False)

    for _, out in predict_chunks(potential.model, structures, head, batch_size, device, call=call):
        energies.append(out[keys.ENERGY].double().cpu())
        z.append(out[keys.PROJ].double().cpu())
    zz = torch.cat(z)
    cov = zz @ zz.T
    diag = torch.diagonal(cov)
    sigma = (diag[:, None] + diag[None, :] - 2.0 * cov).clamp_min(0.0).sqrt()
    return torch.cat(energies).numpy(), sigma.numpy()


def annotate_file(
    path: str, potential: Any, prefix: str = "MLIP_", head: str | None = None, batch_size: int = 8,
    device: torch.device | str = "cpu",
) -> None:
    """Add ``<prefix>energy_uncertainty`` (info, eV) and ``<prefix>forces_uncertainty`` (per-atom array, eV/A)
    to every frame of the extended-XYZ file ``path`` (rewritten atomically, other keys kept)."""
    import ase.io

    from mlip.files import atomic_path

    frames = ase.io.read(path, ":")
    preds = predict_frames(potential, frames, head=head, batch_size=batch_size, device=device)
    for atoms, p in zip(frames, preds):
        atoms.info[f"{prefix}energy_uncertainty"] = p["energy_uncertainty"]
        atoms.arrays[f"{prefix}forces_uncertainty"] = p["forces_uncertainty"]
    with atomic_path(path, suffix=".xyz") as tmp:
        ase.io.write(tmp, frames, format="extxyz")


def load_potential(
    model_path: str, committee: Sequence[str] = (), device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
    force_samples: int | None = None,
) -> Any:
    """The uncertainty evaluator for command lines: LLPR stored in ``model_path``, or, with ``committee``
    (more model files), the committee of ``model_path`` and those files. ``force_samples``: LLPR force and
    stress variances from that many posterior samples instead of exactly (:class:`mlip.uncertainty.LLPR`);
    a committee has no use for it."""
    from mlip.io.model_file import load_model
    from mlip.uncertainty.committee import Committee
    from mlip.uncertainty.llpr import load_llpr

    if force_samples is not None and (force_samples < 1 or committee):
        raise ConfigError(f"--force-samples {force_samples}: give a count >= 1, for LLPR only (a committee's spread "
                          "needs no samples)")
    model = load_model(model_path, device=device, dtype=dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    if committee:
        return Committee([model_path, *committee]).potential(model)
    return load_llpr(model_path, force_samples=force_samples).potential(model)


def uncertainty_scores(
    potential: Any, structures: Sequence[Any], score: str = "forces", head: str | None = None, batch_size: int = 8,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Per-frame selection scores [F]: ``forces`` = predicted force RMSE (eV/A), ``energy`` = energy sigma
    per atom (eV/atom, no backward pass)."""
    if score not in ("forces", "energy"):
        raise ConfigError(f"score must be 'forces' or 'energy', got {score!r}")
    frames = predict_frames(potential, structures, head=head, batch_size=batch_size, device=device,
                            compute_forces=score == "forces")
    if score == "forces":
        return np.array([f["forces_rmse_uncertainty"] for f in frames])
    return np.array([f["energy_uncertainty"] / len(s.numbers) for f, s in zip(frames, structures)])
