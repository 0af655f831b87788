"""Committees: mean and spread of the predictions of several model files.

A :class:`Committee` of M models (same elements and heads, e.g. trained from different seeds or data
splits) predicts the member mean of energy, forces and stress; its uncertainty is the member spread,
``sigma^2 = scale2 * sum_m (y_m - mean)^2 / (M - 1)`` (unbiased sample variance, times an optional
calibration factor ``scale2`` fitted by :func:`mlip.uncertainty.core.scale_calibration`). The outputs have
the names and meanings of :class:`mlip.uncertainty.llpr.LLPRPotential`, so the two methods are compared
on the same footing; ``proj`` [B, M] holds centred member energies ``sqrt(scale2/(M-1)) (E_m - mean)``,
whose inner products are the energy covariance between structures (used for energy differences).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from mlip.data import keys
from mlip.device import model_device, model_dtype
from mlip.errors import ConfigError
from mlip.inference import evaluate


class Committee:
    """Several models evaluated together. ``members``: model-file paths or modules (at least two)."""

    def __init__(self, members: Sequence[str | Path | torch.nn.Module], scale2: float = 1.0) -> None:
        if len(members) < 2:
            raise ConfigError(f"a committee needs at least two models, got {len(members)}")
        if not scale2 > 0:
            raise ConfigError(f"committee scale2 must be > 0, got {scale2}")
        self.members = list(members)
        self.scale2 = float(scale2)

    def potential(self, model: torch.nn.Module) -> CommitteePotential:
        """The committee on ``model``'s device and dtype (``model`` itself only fixes those)."""
        device, dtype = model_device(model), model_dtype(model)
        return CommitteePotential([_load(m, device, dtype) for m in self.members], self.scale2)


def _load(member: str | Path | torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    if isinstance(member, torch.nn.Module):
        import copy

        model = copy.deepcopy(member).to(device=device, dtype=dtype)
    else:
        from mlip.io.model_file import load_model

        model = load_model(member, device=device, dtype=dtype)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class CommitteePotential:
    """``potential(batch, compute_stress=False) -> dict`` with committee means and spreads."""

    def __init__(self, models: list[torch.nn.Module], scale2: float = 1.0) -> None:
        head_lists = [list(m.heads) for m in models]
        elements = [list(m.atomic_numbers) for m in models]
        if any(h != head_lists[0] for h in head_lists) or any(e != elements[0] for e in elements):
            raise ConfigError(f"committee members differ in heads {head_lists} or elements {elements}")
        self.models = models
        self.model = models[0]  # heads, r_max and dtype for batching
        self.scale2 = float(scale2)

    def __call__(
        self, batch: dict[str, torch.Tensor], compute_stress: bool = False, compute_forces: bool = True
    ) -> dict[str, torch.Tensor]:
        runs = [evaluate(m, batch, compute_stress=compute_stress) for m in self.models]
        m = len(runs)
        norm = math.sqrt(self.scale2 / (m - 1))
        out: dict[str, torch.Tensor] = {}
        energies = torch.stack([r[keys.ENERGY] for r in runs])  # [M, B]
        out[keys.ENERGY] = energies.mean(dim=0)
        out[keys.NODE_ENERGY] = torch.stack([r[keys.NODE_ENERGY] for r in runs]).mean(dim=0)
        out[keys.MEMBERS_ENERGY] = energies
        out[keys.PROJ] = (norm * (energies - out[keys.ENERGY])).T.contiguous()
        out[keys.ENERGY_UNCERTAINTY] = out[keys.PROJ].pow(2).sum(dim=1).sqrt()
        forces = torch.stack([r[keys.FORCES] for r in runs])  # [M, N, 3]
        out[keys.FORCES] = forces.mean(dim=0)
        out[keys.FORCES_VARIANCE] = (norm * (forces - out[keys.FORCES])).pow(2).sum(dim=0)
        out[keys.FORCES_UNCERTAINTY] = out[keys.FORCES_VARIANCE].sum(dim=1).sqrt()
        if compute_stress:
            stress = torch.stack([r[keys.STRESS] for r in runs])  # [M, B, 3, 3]
            out[keys.STRESS] = stress.mean(dim=0)
            out[keys.VIRIALS] = torch.stack([r[keys.VIRIALS] for r in runs]).mean(dim=0)
            out[keys.STRESS_UNCERTAINTY] = (norm * (stress - out[keys.STRESS])).pow(2).sum(dim=0).sqrt()
        return out
