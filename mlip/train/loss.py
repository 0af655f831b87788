"""Training losses: weighted MSE, Huber and the "universal" conditional Huber (MACE-MP-0, Eqs. 5 / C1-C2).

All losses are weighted means over the *labelled* entries of a batch:

- energy: per-atom energy error ``(E_pred - E_ref) / N_b`` per frame b (eV/atom);
- forces: every Cartesian component of every atom (eV/A);
- stress: every component of the 3x3 stress (eV/A^3);
- virials: the 3x3 virial divided by the number of atoms (eV/atom).

A frame without a label (``has_energy`` false, ...) contributes nothing to that term; the mean is taken over
the labelled entries only. The weight of an entry is ``frame weight * property weight of the frame *
head weight`` (``weight``, ``<prop>_weight`` of the batch; head weights from the config), times the global
``lambda`` of the property. The universal loss scales the force Huber delta by 1.0 / 0.7 / 0.4 / 0.1 when the
norm of the atom's reference force is < 100, [100, 200), [200, 300), >= 300 eV/A.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mlip.data import keys

PROPERTIES = keys.PROPERTIES


@dataclass
class LossWeights:
    """Global weights (lambda) of each property."""

    energy: float = 1.0
    forces: float = 100.0
    stress: float = 0.0
    virials: float = 0.0

    def get(self, prop: str) -> float:
        return float(getattr(self, prop))


def huber(error: torch.Tensor, delta: float | torch.Tensor) -> torch.Tensor:
    """Element-wise Huber: ``0.5 e^2`` for ``|e| <= delta``, else ``delta (|e| - delta/2)``.

    ``delta`` may be a tensor broadcastable to ``error`` (conditional Huber).
    """
    abs_err = error.abs()
    delta = torch.as_tensor(delta, dtype=error.dtype, device=error.device)
    quadratic = 0.5 * error * error
    linear = delta * (abs_err - 0.5 * delta)
    return torch.where(abs_err <= delta, quadratic, linear)


def force_delta_factor(ref_forces: torch.Tensor) -> torch.Tensor:
    """Per-atom multiplier of the Huber delta from the reference force norm [N] (MACE-MP-0 Eq. C2).

    norm < 100 -> 1.0; 100 <= norm < 200 -> 0.7; 200 <= norm < 300 -> 0.4; norm >= 300 -> 0.1 (eV/A).
    """
    norm = torch.linalg.vector_norm(ref_forces, dim=-1)
    factor = torch.full_like(norm, 0.1)
    factor = torch.where(norm < 300.0, torch.full_like(norm, 0.4), factor)
    factor = torch.where(norm < 200.0, torch.full_like(norm, 0.7), factor)
    factor = torch.where(norm < 100.0, torch.ones_like(norm), factor)
    return factor


def _num_atoms(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    ptr = batch[keys.PTR]
    return (ptr[1:] - ptr[:-1]).to(batch[keys.POSITIONS].dtype)


def _frame_weights(batch: dict[str, torch.Tensor], prop: str, head_weights: torch.Tensor | None) -> torch.Tensor:
    """Weight of each frame for ``prop`` [B]: frame weight x property weight x head weight x has-label mask."""
    w = batch[keys.WEIGHT] * batch[keys.PROPERTY_WEIGHT[prop]]
    if head_weights is not None:
        w = w * head_weights.to(w)[batch[keys.HEAD]]
    return w * batch[keys.HAS_LABEL[prop]].to(w.dtype)


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``sum(w * v) / count(mask)`` with ``0`` when nothing is labelled. ``values`` [M, ...], ``weights`` [M]."""
    per_entry = values.reshape(values.shape[0], -1)
    count = mask.sum() * per_entry.shape[1]
    total = (weights.unsqueeze(-1) * per_entry).sum()
    # nothing labelled: weights are 0, total is 0; no data-dependent branch (compiled steps, no graph break)
    return total / count.clamp_min(1)


class WeightedLoss(torch.nn.Module):
    """Weighted MSE / Huber / universal loss over energy, forces, stress and virials.

    ``forward(batch, output)`` returns ``(total, terms)`` where ``terms[prop]`` is the weighted mean of
    that property's error (before the global lambda) and ``total = sum lambda_p * terms[p]``.
    """

    def __init__(
        self,
        kind: str = "mse",
        weights: LossWeights | None = None,
        huber_delta: float = 0.01,
        head_weights: list[float] | None = None,
    ) -> None:
        super().__init__()
        if kind not in ("mse", "huber", "universal"):
            raise ValueError(f"unknown loss type {kind!r}")
        self.kind = kind
        self.weights = weights or LossWeights()
        self.huber_delta = float(huber_delta)
        self.head_weights = None if head_weights is None else torch.tensor(head_weights, dtype=torch.float64)

    def _elementwise(self, error: torch.Tensor, delta: float | torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "mse":
            return error * error
        return huber(error, self.huber_delta if delta is None else delta)

    def term(self, prop: str, batch: dict[str, torch.Tensor], output: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted mean error of one property (no lambda)."""
        w = _frame_weights(batch, prop, self.head_weights)
        mask = batch[keys.HAS_LABEL[prop]]
        n_atoms = _num_atoms(batch)
        if prop == keys.ENERGY:
            err = (output[keys.ENERGY] - batch[keys.ENERGY]) / n_atoms
            return _weighted_mean(self._elementwise(err), w, mask)
        if prop == keys.FORCES:
            atom_w = w[batch[keys.BATCH]]
            atom_mask = mask[batch[keys.BATCH]]
            err = output[keys.FORCES] - batch[keys.FORCES]
            delta = None
            if self.kind == "universal":
                delta = (self.huber_delta * force_delta_factor(batch[keys.FORCES])).unsqueeze(-1)
            return _weighted_mean(self._elementwise(err, delta), atom_w, atom_mask)
        if prop == keys.STRESS:
            err = output[keys.STRESS] - batch[keys.STRESS]
            return _weighted_mean(self._elementwise(err), w, mask)
        if prop == keys.VIRIALS:
            err = (output[keys.VIRIALS] - batch[keys.VIRIALS]) / n_atoms.view(-1, 1, 1)
            return _weighted_mean(self._elementwise(err), w, mask)
        raise ValueError(f"unknown property {prop!r}")

    def forward(
        self, batch: dict[str, torch.Tensor], output: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total = batch[keys.POSITIONS].new_zeros(())
        terms: dict[str, torch.Tensor] = {}
        for prop in PROPERTIES:
            lam = self.weights.get(prop)
            if lam == 0.0:
                continue
            t = self.term(prop, batch, output)
            terms[prop] = t
            total = total + lam * t
        return total, terms

    def needs_stress(self) -> bool:
        """Whether the model must compute stress/virials for this loss."""
        return self.weights.stress != 0.0 or self.weights.virials != 0.0
