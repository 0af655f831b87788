"""Neighbour lists with periodic images (vesin), in the edge convention of docs/architecture.md.

An edge is (sender s, receiver r, integer lattice translation S) with
``vectors = positions[r] - positions[s] + S @ cell`` (Angstrom). Every pair closer than the cutoff
appears in both directions; an atom is its own neighbour only through a non-zero translation
(cells smaller than the cutoff). vesin handles triclinic cells, cells smaller than the cutoff (many
images), mixed periodicity (slabs, wires) and non-periodic systems with a zero cell.
"""

from __future__ import annotations

import numpy as np
import vesin

from mlip.errors import DataError


def neighbor_list(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All directed pairs closer than ``cutoff``.

    Args:
        positions: [N, 3] Cartesian positions (Angstrom); they need not lie inside the cell.
        cell: [3, 3] lattice vectors as rows (Angstrom). Ignored along non-periodic directions;
            may be all zeros for a non-periodic system.
        pbc: [3] periodicity along each cell vector.
        cutoff: radius (Angstrom), > 0.

    Returns:
        ``(sender [E] int64, receiver [E] int64, unit_shifts [E, 3] int64, distances [E] float64)``
        with ``|positions[receiver] - positions[sender] + unit_shifts @ cell| = distances < cutoff``.

    Raises:
        DataError: a periodic direction whose cell vectors are degenerate (zero volume spanned).
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64).reshape(-1, 3)
    cell = np.ascontiguousarray(cell, dtype=np.float64).reshape(3, 3)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if not cutoff > 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    n = positions.shape[0]
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), np.zeros((0, 3), dtype=np.int64), np.zeros(0)
    if pbc.any():
        _check_periodic_cell(cell, pbc)
    else:
        cell = np.zeros((3, 3))
    calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shifts, distances = calculator.compute(
        points=positions, box=cell, periodic=[bool(p) for p in pbc], quantities="ijSd"
    )
    sender = np.asarray(i, dtype=np.int64)
    receiver = np.asarray(j, dtype=np.int64)
    unit_shifts = np.asarray(shifts, dtype=np.int64).reshape(-1, 3)
    distances = np.asarray(distances, dtype=np.float64)
    # vesin never returns zero-shift self pairs, but keep the contract explicit.
    keep = ~((sender == receiver) & ~unit_shifts.any(axis=1))
    if not keep.all():
        sender, receiver, unit_shifts, distances = (
            sender[keep], receiver[keep], unit_shifts[keep], distances[keep]
        )
    return sender, receiver, unit_shifts, distances


def canonical_order(sender: np.ndarray, receiver: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Permutation sorting edges by (receiver, sender, shift x, y, z): an order independent of the list's own.

    Edges grouped by receiver also keep the model's gathers and scatters over edges local in memory.
    """
    return np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], sender, receiver))


def edge_vectors(
    positions: np.ndarray, cell: np.ndarray, sender: np.ndarray, receiver: np.ndarray,
    unit_shifts: np.ndarray,
) -> np.ndarray:
    """Edge vectors ``positions[receiver] - positions[sender] + unit_shifts @ cell``, [E, 3] (Angstrom)."""
    return positions[receiver] - positions[sender] + unit_shifts @ cell


def _check_periodic_cell(cell: np.ndarray, pbc: np.ndarray) -> None:
    periodic = cell[pbc]
    # The periodic vectors must be linearly independent (rank = number of periodic directions).
    if np.linalg.matrix_rank(periodic, tol=1e-8) < periodic.shape[0]:
        raise DataError(
            f"cell {cell.tolist()} is degenerate along the periodic directions {pbc.tolist()}"
        )


class SkinNeighborList:
    """Neighbour list with cutoff ``cutoff + skin``, rebuilt only when needed.

    ``update(positions, cell, pbc, numbers)`` returns ``(edge_index [2,E], unit_shifts [E,3])``
    (int64 numpy) of all pairs closer than ``cutoff`` at the current positions, in canonical order.
    The cached list is rebuilt when an atom moved more than ``skin / 2`` since the last build
    (then no pair can have come from beyond ``cutoff + skin``) or cell, pbc or numbers changed.
    """

    def __init__(self, cutoff: float, skin: float) -> None:
        if skin < 0:
            raise ValueError(f"skin must be >= 0, got {skin}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.num_builds = 0
        self._key: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._reference: np.ndarray | None = None
        self._pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _needs_rebuild(self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, numbers: np.ndarray) -> bool:
        if self._key is None or self._reference is None:
            return True
        old_cell, old_pbc, old_numbers = self._key
        if not (np.array_equal(cell, old_cell) and np.array_equal(pbc, old_pbc) and np.array_equal(numbers, old_numbers)):
            return True
        if self.skin == 0:
            return True
        moved = np.sqrt(((positions - self._reference) ** 2).sum(axis=1).max(initial=0.0))
        return bool(moved > 0.5 * self.skin)

    def update(
        self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, numbers: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if self._needs_rebuild(positions, cell, pbc, numbers):
            sender, receiver, shifts, _ = neighbor_list(positions, cell, pbc, self.cutoff + self.skin)
            shifts = shifts.astype(np.int64)
            # sorted once per build: the pairs kept at a call are a subset, already in canonical order
            # (the order is total on distinct (sender, receiver, shift) pairs), so no sort per call
            order = canonical_order(sender, receiver, shifts)
            self._pairs = (np.stack([sender[order], receiver[order]]), shifts[order])
            self._key = (cell.copy(), pbc.copy(), numbers.copy())
            self._reference = positions.copy()
            self.num_builds += 1
        assert self._pairs is not None
        edge_index, shifts = self._pairs
        vectors = positions[edge_index[1]] - positions[edge_index[0]] + shifts @ cell
        keep = np.einsum("ij,ij->i", vectors, vectors) < self.cutoff**2
        return edge_index[:, keep], shifts[keep]
