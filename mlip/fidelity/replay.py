"""Replay-set selection for multi-head fine-tuning (MACE-MP-0 App. C, MACE-MH-1) and E0 re-estimation.

When a pretrained model is fine-tuned on new data, a *replay* set drawn from the pretraining data keeps
the pretraining head trained so that the shared backbone does not forget. The selection here is made
of pure functions on structure lists (:class:`ase.Atoms` or :class:`Configuration`) and descriptor
matrices:

1. element filter: keep pretraining frames sharing at least ``min_shared`` (default 2) elements with the
   fine-tuning data (MP-0 App. C). If the fine-tuning data holds fewer than ``min_shared`` elements, the
   threshold becomes that number (a one-element fine-tuning set keeps frames containing that element);
2. budget (ratio guard): the replay size is capped at ``max(minimum, floor(max_ratio * n_new))`` so the
   replay set cannot swamp the new data, but a tiny fine-tuning set still gets ``minimum`` frames;
   the result never exceeds the number of candidates. Defaults: ``max_ratio = 1`` (at most as many
   replay frames as new frames), ``minimum = 16`` (one batch);
3. sampling among the candidates: ``random`` (seeded, without replacement) or ``fps`` (farthest-point
   sampling on per-structure descriptors, e.g. the pretrained model's mean-pooled node features).

:func:`refit_e0s` re-estimates a new head's E0s from the residuals of the pretrained model
(MACE-MH-1 Eqs. 20-25).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlip.data.elements import symbols
from mlip.errors import ConfigError, DataError
from mlip.fidelity.select import farthest_point_sampling
from mlip.fidelity.shifts import solve_counts

REPLAY_METHODS = ("random", "fps")


def _elements(structure: Any) -> set[int]:
    return {int(z) for z in np.asarray(structure.numbers)}


def elements_in(structures: Iterable[Any]) -> set[int]:
    """Set of atomic numbers present in ``structures``."""
    out: set[int] = set()
    for s in structures:
        out |= _elements(s)
    return out


def element_filter(candidates: Sequence[Any], new_elements: Iterable[int], min_shared: int = 2) -> np.ndarray:
    """Indices of ``candidates`` sharing at least ``min(min_shared, len(new_elements))`` elements with
    ``new_elements`` (the elements of the fine-tuning data)."""
    new = {int(z) for z in new_elements}
    if min_shared < 1:
        raise ConfigError(f"min_shared must be >= 1, got {min_shared}")
    need = min(min_shared, len(new))
    if need == 0:
        raise DataError("fine-tuning data has no atoms: cannot filter replay frames by element")
    return np.asarray([k for k, s in enumerate(candidates) if len(_elements(s) & new) >= need], dtype=np.int64)


def replay_budget(
    n_new: int, n_available: int, n_requested: int | None = None, max_ratio: float = 1.0, minimum: int = 16
) -> int:
    """Number of replay frames: ``min(n_requested or cap, cap, n_available)`` with the ratio guard
    ``cap = max(minimum, floor(max_ratio * n_new))``."""
    if max_ratio < 0 or minimum < 0 or n_new < 0 or (n_requested is not None and n_requested < 0):
        raise ConfigError("replay budget: counts and ratio must be >= 0")
    cap = max(int(minimum), int(np.floor(max_ratio * n_new)))
    n = cap if n_requested is None else min(int(n_requested), cap)
    return max(0, min(n, int(n_available)))


@dataclass
class ReplaySelection:
    """Chosen replay frames (indices into the pretraining list) and how they were chosen."""

    indices: np.ndarray
    method: str
    n_candidates: int
    n_pretrain: int
    budget: int
    shared_elements: list[int]

    def describe(self) -> str:
        """One line for the fine-tuning summary."""
        return (
            f"replay: {len(self.indices)} of {self.n_pretrain} pretraining frames "
            f"({self.n_candidates} share the fine-tuning elements), method {self.method}"
        )


def select_replay(
    pretrain: Sequence[Any],
    new: Sequence[Any],
    n_requested: int | None = None,
    method: str = "random",
    descriptors: np.ndarray | None = None,
    min_shared: int = 2,
    max_ratio: float = 1.0,
    minimum: int = 16,
    seed: int = 0,
    filter_elements: bool = True,
) -> ReplaySelection:
    """Choose replay frames from ``pretrain`` for fine-tuning on ``new``.

    ``descriptors`` [len(pretrain), D] are needed for ``method="fps"`` (FPS starts from the candidate
    farthest from the candidates' mean). Raises :class:`DataError` when no candidate survives the
    element filter, :class:`ConfigError` for an unknown method or missing descriptors.
    """
    if method not in REPLAY_METHODS:
        raise ConfigError(f"unknown replay method '{method}' (choose from {', '.join(REPLAY_METHODS)})")
    if not pretrain:
        raise DataError("replay: no pretraining frames given")
    new_elements = elements_in(new)
    if filter_elements:
        cand = element_filter(pretrain, new_elements, min_shared)
        if cand.size == 0:
            raise DataError(
                f"replay: no pretraining frame shares >= {min(min_shared, len(new_elements))} elements "
                f"with the fine-tuning data (elements {symbols(sorted(new_elements))})"
            )
    else:
        cand = np.arange(len(pretrain), dtype=np.int64)
    budget = replay_budget(len(new), cand.size, n_requested, max_ratio, minimum)
    if method == "random":
        rng = np.random.default_rng(seed)
        chosen = cand[rng.permutation(cand.size)[:budget]]
    else:
        if descriptors is None:
            raise ConfigError("replay method 'fps' needs descriptors of the pretraining frames")
        desc = np.asarray(descriptors, dtype=float)
        if desc.shape[0] != len(pretrain):
            raise DataError(f"replay: {desc.shape[0]} descriptor rows for {len(pretrain)} pretraining frames")
        chosen = cand[farthest_point_sampling(desc[cand], budget)]
    return ReplaySelection(
        indices=np.asarray(chosen, dtype=np.int64),
        method=method,
        n_candidates=int(cand.size),
        n_pretrain=len(pretrain),
        budget=budget,
        shared_elements=sorted(new_elements),
    )


def refit_e0s(
    ref_energies: np.ndarray, pred_energies: np.ndarray, counts: np.ndarray, e0_old: np.ndarray
) -> np.ndarray:
    """New-head E0s from a pretrained model's residuals (MACE-MH-1 Eqs. 20-25), all in eV.

    ``eps = E_ref - E_pred`` [F]; solve ``N c = eps`` by least squares (minimum norm if the element-count
    matrix ``counts`` [F, S] is rank deficient); return ``E0_new = E0_old + c`` [S]. ``pred_energies``
    are the pretrained model's total energies (with ``e0_old`` inside) on the new head's frames.
    """
    eps = np.asarray(ref_energies, float) - np.asarray(pred_energies, float)
    c, _ = solve_counts(counts, eps)
    e0_old = np.asarray(e0_old, float).ravel()
    if e0_old.shape != c.shape:
        raise DataError(f"E0 refit: {e0_old.size} old E0s for {c.size} elements")
    return e0_old + c
