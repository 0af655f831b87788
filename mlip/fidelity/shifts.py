"""Per-element energy shifts: NEP89 data-set alignment and MACE-MH-1 E0 re-estimation.

Both are the same closed-form linear least squares on element counts ``N`` [F, S]
(frames x elements):

- NEP89 (Liang et al. 2025): a data set whose energies sit on another reference is aligned to a model
  trained on the reference data by per-element shifts Delta minimising
  ``sum_a (U_ref,a + sum_I N_a,I Delta_I - U_pred,a)^2``, i.e. ``N Delta = U_pred - U_ref``; the aligned
  labels are ``U_ref + N Delta``.
- MACE-MH-1 (Eqs. 20-25): a new head's E0s from the residuals of a pretrained model:
  ``eps = E_ref - E_pred``, ``N c = eps``, ``E0_new = E0_old + c`` (in :mod:`mlip.fidelity.replay`).

When ``N`` is rank deficient (e.g. every frame has the same composition) the minimum-norm solution is
returned: the per-frame shift ``N Delta`` is still the least-squares one, but its split between
elements is not determined by the data. :func:`solve_counts` reports the rank.

Units: eV.
"""

from __future__ import annotations

from collections.abc import Sequence
import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from mlip.errors import DataError
from mlip.fidelity.labels import (
    DEFAULT_KEYS,
    LabelKeys,
    element_counts,
    elements_of,
    get_energy,
    get_forces,
    get_tensor,
    with_labels,
)


def solve_counts(counts: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, int]:
    """Least-squares (minimum-norm) solution x [S] of ``counts @ x = target``; returns (x, rank).

    ``counts`` [F, S] element counts, ``target`` [F] energies (eV). Frames with non-finite target are an
    error; elements absent from all frames get 0.
    """
    n = np.asarray(counts, dtype=float)
    y = np.asarray(target, dtype=float).ravel()
    if n.ndim != 2 or n.shape[0] != y.shape[0]:
        raise DataError(f"element counts {n.shape} do not match {y.shape[0]} energies")
    if n.shape[0] == 0:
        raise DataError("no frames with energies to fit per-element shifts")
    if not np.all(np.isfinite(y)):
        raise DataError("non-finite energy in per-element shift fit")
    x, _, rank, _ = np.linalg.lstsq(n, y, rcond=None)
    return x, int(rank)


def fit_element_shifts(ref_energies: np.ndarray, pred_energies: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """NEP89 per-element shifts Delta [S] (eV): minimise ||U_ref + N Delta - U_pred||^2.

    ``ref_energies`` [F] labels of the data set to align, ``pred_energies`` [F] the reference model's
    predictions on the same frames, ``counts`` [F, S].
    """
    delta, _ = solve_counts(counts, np.asarray(pred_energies, float) - np.asarray(ref_energies, float))
    return delta


def apply_element_shifts(energies: np.ndarray, counts: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Aligned energies U_ref + N Delta [F] (eV)."""
    return np.asarray(energies, float) + np.asarray(counts, float) @ np.asarray(shifts, float)


def shift_structures(
    structures: Sequence[Atoms],
    pred_energies: np.ndarray,
    keys: LabelKeys | None = None,
    drop_energy: bool = False,
    path: str = "<data>",
) -> tuple[list[Atoms], dict]:
    """Fit NEP89 shifts of ``structures`` against ``pred_energies`` [F] (a reference model's energies,
    eV) and apply them; returns (aligned Atoms, JSON record).

    Frames without an energy label are left out of the fit. ``drop_energy`` additionally writes
    ``config_energy_weight = 0`` into every frame's info, so training keeps forces/stress only.
    Record keys: ``shifts`` (eV by symbol), ``rank``, ``n_fit``, ``rmse_before``/``rmse_after``
    (eV, labels against predictions), ``drop_energy``.
    """
    keys = keys or DEFAULT_KEYS
    pred = np.asarray(pred_energies, float).ravel()
    if pred.size != len(structures):
        raise DataError(f"{path}: {pred.size} predictions for {len(structures)} frames")
    elements = elements_of(structures)
    counts = element_counts(structures, elements, path)
    energies = [get_energy(a, keys.energy) for a in structures]
    mask = np.array([e is not None for e in energies], dtype=bool)
    ref = np.array([e if e is not None else 0.0 for e in energies])
    if not np.any(mask):
        raise DataError(f"{path}: no frame has an energy under '{keys.energy}'")
    shifts, rank = solve_counts(counts[mask], pred[mask] - ref[mask])
    new = apply_element_shifts(ref, counts, shifts)
    out = []
    for f, atoms in enumerate(structures):
        aligned = with_labels(
            atoms, keys, float(new[f]) if mask[f] else None, get_forces(atoms, keys.forces),
            get_tensor(atoms, keys.stress), get_tensor(atoms, keys.virials),
        )
        if drop_energy:
            aligned.info["config_energy_weight"] = 0.0
        out.append(aligned)
    rms = lambda d: float(np.sqrt(np.mean(d * d)))  # noqa: E731
    record = {
        "method": "element_shifts",
        "shifts": {chemical_symbols[z]: float(v) for z, v in zip(elements, shifts)},
        "rank": rank,
        "n_elements": len(elements),
        "n_fit": int(mask.sum()),
        "n_frames": len(out),
        "rmse_before": rms(ref[mask] - pred[mask]),
        "rmse_after": rms(new[mask] - pred[mask]),
        "drop_energy": bool(drop_energy),
        "units": "eV",
    }
    return out, record
