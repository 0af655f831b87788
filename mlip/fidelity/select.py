"""Subset selection in descriptor space (NEP89): farthest-point sampling and the greedy d_min filter,
plus a PCA projection plot of selected against all.

Descriptors are per-structure vectors X [F, D] (see :mod:`mlip.fidelity.descriptors`); distances are
Euclidean in that space. Everything is deterministic.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from mlip.errors import ConfigError, DataError
from mlip.files import atomic_path


def _as_matrix(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise DataError(f"descriptors must be a [frames, features] matrix, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataError("descriptors contain non-finite values")
    return x


def farthest_point_sampling(
    x: np.ndarray, n: int, start: int | None = None, seed: int | None = None, initial: Sequence[int] = ()
) -> np.ndarray:
    """Indices of ``n`` rows of ``x`` [F, D] chosen by farthest-point sampling (max-min distance).

    Start: ``start`` if given; else, with ``seed``, a random row (``numpy.random.default_rng(seed)``);
    else the row farthest from the mean of ``x`` (ties: lowest index). ``initial`` are rows already
    chosen (e.g. the fine-tuning data stacked onto the candidates): FPS then continues from them and they
    are not returned. Each next pick is the row whose distance to its nearest chosen row is largest
    (ties: lowest index). ``n`` larger than the available rows returns them all, in FPS order.
    """
    x = _as_matrix(x)
    if n < 0:
        raise ConfigError(f"number of frames to select must be >= 0, got {n}")
    f = x.shape[0]
    chosen_mask = np.zeros(f, dtype=bool)
    dmin = np.full(f, np.inf)
    for k in initial:
        chosen_mask[int(k)] = True
        dmin = np.minimum(dmin, np.linalg.norm(x - x[int(k)], axis=1))
    n = min(n, f - int(chosen_mask.sum()))
    order: list[int] = []
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if not len(initial):
        if start is None:
            if seed is not None:
                start = int(np.random.default_rng(seed).integers(f))
            else:
                start = int(np.argmax(np.linalg.norm(x - x.mean(axis=0), axis=1)))
        if not 0 <= start < f:
            raise ConfigError(f"FPS start index {start} outside 0..{f - 1}")
        order.append(start)
        chosen_mask[start] = True
        dmin = np.minimum(dmin, np.linalg.norm(x - x[start], axis=1))
    while len(order) < n:
        cand = np.where(chosen_mask, -np.inf, dmin)
        k = int(np.argmax(cand))
        order.append(k)
        chosen_mask[k] = True
        dmin = np.minimum(dmin, np.linalg.norm(x - x[k], axis=1))
    return np.asarray(order, dtype=np.int64)


def select_by_score(
    scores: np.ndarray, n: int, x: np.ndarray | None = None, pool_factor: float = 1.0
) -> np.ndarray:
    """Indices of ``n`` frames with the highest ``scores`` [F] (e.g. predicted uncertainty), highest first.

    With descriptors ``x`` [F, D] and ``pool_factor > 1``: the ``ceil(pool_factor * n)`` highest-scoring
    frames are thinned to ``n`` by farthest-point sampling in ``x``, starting from the highest score
    (uncertain *and* diverse; ``pool_factor = 1`` is pure uncertainty). Ties: lowest index first.
    """
    scores = np.asarray(scores, dtype=float).reshape(-1)
    if not np.all(np.isfinite(scores)):
        raise DataError("selection scores contain non-finite values")
    if n < 0 or pool_factor < 1:
        raise ConfigError(f"need n >= 0 and pool_factor >= 1, got n={n}, pool_factor={pool_factor}")
    order = np.lexsort((np.arange(scores.size), -scores))
    if x is None or pool_factor == 1:
        return order[:n].astype(np.int64)
    pool = order[: min(scores.size, int(np.ceil(pool_factor * n)))]
    picked = farthest_point_sampling(np.asarray(x)[pool], n, start=0)
    return pool[picked].astype(np.int64)


def dmin_filter(x: np.ndarray, d_min: float, order: Sequence[int] | None = None) -> np.ndarray:
    """NEP89's greedy filter: walk the rows in ``order`` (default: file order) and keep a row only if
    its distance to every row kept so far is larger than ``d_min``. The first row is always kept.

    Returns the kept indices in the order they were kept; pairwise distances among them are > d_min.
    """
    x = _as_matrix(x)
    if d_min < 0:
        raise ConfigError(f"d_min must be >= 0, got {d_min}")
    order = range(x.shape[0]) if order is None else order
    kept: list[int] = []
    kept_x = np.zeros((0, x.shape[1]))
    for k in order:
        row = x[int(k)]
        if kept and np.min(np.linalg.norm(kept_x - row, axis=1)) <= d_min:
            continue
        kept.append(int(k))
        kept_x = np.vstack([kept_x, row])
    return np.asarray(kept, dtype=np.int64)


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows of ``x`` [F, D] onto the first two principal components (centred SVD).

    Returns (coordinates [F, 2], explained-variance fractions [2]). Missing components are zero.
    """
    x = _as_matrix(x)
    xc = x - x.mean(axis=0)
    if xc.shape[0] < 2 or not np.any(xc):
        return np.zeros((x.shape[0], 2)), np.zeros(2)
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    k = min(2, vt.shape[0])
    coords = np.zeros((x.shape[0], 2))
    coords[:, :k] = xc @ vt[:k].T
    var = s**2
    frac = np.zeros(2)
    frac[:k] = var[:k] / var.sum()
    return coords, frac


def plot_selection(x: np.ndarray, selected: Sequence[int], path: str | os.PathLike, title: str = "") -> None:
    """Write a PNG (atomic) of the PCA projection: all frames in grey, selected ones highlighted."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state is touched

    coords, frac = pca_2d(x)
    sel = np.asarray(selected, dtype=np.int64)
    fig = Figure(figsize=(5.0, 4.2), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(coords[:, 0], coords[:, 1], s=8, c="0.7", label=f"all ({len(coords)})")
    if sel.size:
        ax.scatter(coords[sel, 0], coords[sel, 1], s=18, c="tab:red", edgecolors="k", linewidths=0.3,
                   label=f"selected ({sel.size})")
    ax.set_xlabel(f"PC1 ({100 * frac[0]:.1f}% var.)")
    ax.set_ylabel(f"PC2 ({100 * frac[1]:.1f}% var.)")
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
