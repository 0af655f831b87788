"""Input checks shared by every engine (ASE calculator, torch-sim, LAMMPS): elements and periodic cells.

Run before any computation, so a bad structure is refused with one line (:class:`mlip.errors.DataError`)
instead of an exploding neighbour search or an index error inside the model.
"""

from __future__ import annotations

import math

import numpy as np

from mlip.errors import DataError

__all__ = ["DEFAULT_MAX_IMAGES", "check_cell", "check_elements", "perpendicular_widths"]

DEFAULT_MAX_IMAGES = 5_000
"""Largest number of periodic images (product over periodic directions of ``2 ceil(cutoff/width) + 1``)
the neighbour search may need before a cell counts as too small for the cutoff."""


def perpendicular_widths(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Spacing between periodic images along each periodic direction (Angstrom; ``inf`` if not periodic).

    For direction ``i`` it is the length of the component of ``cell[i]`` orthogonal to the other
    periodic lattice vectors: ``V / |a_j x a_k|`` in a 3D-periodic cell, ``|a_i x a_j| / |a_j|`` in
    a slab, ``|a_i|`` in a wire. Zero means a degenerate periodic cell.
    """
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    widths = np.full(3, np.inf)
    for i in np.flatnonzero(pbc):
        others = cell[[j for j in np.flatnonzero(pbc) if j != i]]
        vector = cell[i]
        if len(others):
            # Orthogonal complement of span(others) via least squares projection.
            coeffs, *_ = np.linalg.lstsq(others.T, vector, rcond=None)
            vector = vector - others.T @ coeffs
        widths[i] = float(np.linalg.norm(vector))
    return widths


def check_cell(cell: np.ndarray, pbc: np.ndarray, cutoff: float, max_images: int = DEFAULT_MAX_IMAGES) -> None:
    """Raise :class:`DataError` for a periodic cell that is degenerate or too small for ``cutoff``.

    "Too small" means the neighbour search within ``cutoff`` would have to visit more than
    ``max_images`` periodic images, ``prod_i (2 ceil(cutoff / w_i) + 1)`` over periodic directions
    with perpendicular widths ``w_i``. Cells narrower than the cutoff are fine otherwise (the
    neighbour list includes an atom's own images); only absurdly thin cells, whose atom density
    makes the edge count explode, are refused. A width below ``1e-6 * cutoff`` (zero volume,
    collinear or zero lattice vectors) is a degenerate cell.
    """
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    if not pbc.any():
        return
    widths = perpendicular_widths(cell, pbc)
    if np.any(widths[pbc] < 1e-6 * cutoff):
        raise DataError(
            f"degenerate periodic cell {np.asarray(cell).tolist()} (pbc {pbc.tolist()}): "
            "the periodic lattice vectors span zero volume"
        )
    counts = [2 * math.ceil(cutoff / w) + 1 for w in widths[pbc]]
    if math.prod(counts) > max_images:
        narrow = int(np.argmin(np.where(pbc, widths, np.inf)))
        raise DataError(
            f"cell too small for the model's cutoff: periodic direction {narrow} has width "
            f"{widths[narrow]:.4g} A, so a cutoff of {cutoff:.4g} A needs "
            f"{'x'.join(map(str, counts))} = {math.prod(counts)} periodic images (limit {max_images})"
        )


def check_elements(numbers: np.ndarray, known: list[int]) -> None:
    """Raise :class:`DataError` naming the elements of ``numbers`` that the model does not know."""
    unknown = sorted(set(int(z) for z in np.unique(numbers)) - set(known))
    if unknown:
        from ase.data import chemical_symbols

        names = ", ".join(f"{chemical_symbols[z]} (Z={z})" for z in unknown)
        have = ", ".join(chemical_symbols[z] for z in known)
        raise DataError(f"atoms contain element(s) {names} unknown to the model; it knows {have}")
