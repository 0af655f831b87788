"""Phonons of a crystal from an mlip potential: force constants, band structure, DOS, imaginary modes, plot.

Force constants come either from the model's analytic Hessian of a supercell
(:func:`force_constants_analytic`, one double-backward evaluation) or from phonopy's finite
displacements (:func:`force_constants_displacement`, one force evaluation per displaced supercell);
the two agree to the finite-difference error. phonopy does the Fourier interpolation, the band
structure along ASE's standard path and the density of states.

The calculator is duck-typed so that this module stays below :mod:`mlip.calculator` in the layer
table: anything with an ASE ``get_forces(atoms)`` and ``get_hessian(atoms, chunk)`` (eV/A^2,
``[3N, 3N]``, atom-major) works, e.g. ``mlip.calculator.MLIPCalculator``.

Conventions: the unit cell given is treated as phonopy's primitive cell (``primitive_matrix`` the identity),
so q-points are fractional coordinates of the unit cell's reciprocal lattice, the same convention as
ASE's band-path k-points. Frequencies are in THz (phonopy's default units); imaginary modes appear
as negative frequencies.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
from ase import Atoms

from mlip.errors import ConfigError
from mlip.files import atomic_write_bytes

__all__ = [
    "IMAGINARY_TOLERANCE",
    "band_structure",
    "dos",
    "force_constants_analytic",
    "force_constants_displacement",
    "imaginary_modes",
    "plot_phonons",
]

IMAGINARY_TOLERANCE = 0.05
"""THz. A frequency below ``-IMAGINARY_TOLERANCE`` counts as imaginary. 0.05 THz (1.7 cm^-1, 0.2 meV)
is well above the round-off of analytic force constants (~1e-6 THz) and the small negative dips that
Fourier interpolation gives acoustic branches close to Gamma, and well below any physically relevant
soft mode."""


class HessianCalculator(Protocol):
    """What the phonon functions need of a calculator (``MLIPCalculator`` has both)."""

    def get_forces(self, atoms: Atoms) -> np.ndarray: ...

    def get_hessian(self, atoms: Atoms, chunk: int = 16) -> np.ndarray: ...


def _to_phonopy_atoms(atoms: Atoms) -> Any:
    """ASE ``Atoms`` -> ``PhonopyAtoms`` (symbols, cell, fractional positions and ASE's masses)."""
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=np.asarray(atoms.cell.array, dtype=float),
        scaled_positions=atoms.get_scaled_positions(wrap=False),
        masses=atoms.get_masses(),
    )


def _to_ase_atoms(cell: Any) -> Atoms:
    """``PhonopyAtoms`` -> periodic ASE ``Atoms`` with the same atom order and masses."""
    return Atoms(
        numbers=cell.numbers,
        cell=cell.cell,
        scaled_positions=cell.scaled_positions,
        masses=cell.masses,
        pbc=True,
    )


def _make_phonopy(unitcell: Atoms, supercell_matrix: Sequence[int] | Sequence[Sequence[int]] | np.ndarray) -> Any:
    """A ``Phonopy`` object for ``unitcell`` (taken as the primitive cell) and ``supercell_matrix``."""
    from phonopy import Phonopy

    if not all(unitcell.pbc):
        raise ConfigError("phonons: the unit cell must be periodic in all three directions")
    # the unit cell as given is the primitive cell (q-points in its reciprocal basis, as ASE's bandpath);
    # an explicit identity: phonopy 4 resolves None to "auto" (a reduced cell)
    return Phonopy(_to_phonopy_atoms(unitcell), supercell_matrix=supercell_matrix, primitive_matrix=np.eye(3))


def force_constants_analytic(
    calc: HessianCalculator,
    unitcell: Atoms,
    supercell_matrix: Sequence[int] | Sequence[Sequence[int]] | np.ndarray,
    chunk: int = 16,
) -> tuple[Any, dict[str, float]]:
    """Phonopy object with force constants from the analytic Hessian of the supercell.

    ``calc.get_hessian(supercell, chunk)`` gives ``H [3N, 3N]`` (eV/A^2, atom-major) of phonopy's own
    supercell (same atom order); ``H`` is symmetrised and reshaped to ``force_constants [N, N, 3, 3]``
    with ``fc[i, j, a, b] = H[3i + a, 3j + b]``. No sum rule is imposed.

    Returns ``(phonon, info)``; ``info``: ``natoms_supercell``, ``max_asymmetry`` (max ``|H - H^T|``
    before symmetrising) and ``max_asr_violation`` (max ``|sum_j fc[i, j]|``), both eV/A^2.
    """
    phonon = _make_phonopy(unitcell, supercell_matrix)
    supercell = _to_ase_atoms(phonon.supercell)
    n = len(supercell)
    hess = np.asarray(calc.get_hessian(supercell, chunk), dtype=float)
    if hess.shape != (3 * n, 3 * n):
        raise ConfigError(f"phonons: Hessian of shape {hess.shape}, expected {(3 * n, 3 * n)}")
    asymmetry = float(np.abs(hess - hess.T).max())
    hess = 0.5 * (hess + hess.T)
    fc = hess.reshape(n, 3, n, 3).transpose(0, 2, 1, 3).copy()
    phonon.force_constants = fc
    info = {
        "natoms_supercell": float(n),
        "max_asymmetry": asymmetry,
        "max_asr_violation": float(np.abs(fc.sum(axis=1)).max()),
    }
    return phonon, info


def force_constants_displacement(
    calc: HessianCalculator,
    unitcell: Atoms,
    supercell_matrix: Sequence[int] | Sequence[Sequence[int]] | np.ndarray,
    distance: float = 0.01,
) -> Any:
    """Phonopy object with force constants from phonopy's finite displacements of ``distance`` (A).

    One ``calc.get_forces`` (eV/A, ``[N, 3]``) per symmetry-reduced displaced supercell; phonopy's
    traditional fit gives the full ``force_constants [N, N, 3, 3]``.
    """
    phonon = _make_phonopy(unitcell, supercell_matrix)
    phonon.generate_displacements(distance=distance)
    forces = []
    for displaced in phonon.supercells_with_displacements:
        atoms = _to_ase_atoms(displaced)
        forces.append(np.asarray(calc.get_forces(atoms), dtype=float))
    phonon.forces = np.array(forces)
    phonon.produce_force_constants(show_drift=False)
    return phonon


def _axis_labels(positions: np.ndarray, names: Sequence[str]) -> tuple[list[str], list[float]]:
    """Merge labels at the same axis position (a path jump) into ``"K|U"``; ``G`` becomes Gamma."""
    labels: list[str] = []
    where: list[float] = []
    for x, name in zip(positions, names):
        name = "\u0393" if name == "G" else name
        if where and abs(x - where[-1]) < 1e-9:
            labels[-1] = f"{labels[-1]}|{name}"
        else:
            labels.append(name)
            where.append(float(x))
    return labels, where


def band_structure(phonon: Any, unitcell: Atoms, npoints: int = 51) -> dict[str, Any]:
    """Frequencies along ASE's standard band path of ``unitcell`` (``unitcell.cell.bandpath``).

    ASE's k-points are fractional coordinates of the reciprocal lattice of the cell as given, which is
    the q-point convention of ``phonon`` (made by this module with the unit cell as primitive cell).

    Returns ``qpoints [nq, 3]`` (fractional), ``distances [nq]`` (ASE's linear axis, 1/A including
    2 pi), ``frequencies [nq, 3 * natoms]`` (THz, ascending per q-point), ``labels`` and
    ``label_positions`` (special points on the distance axis; a jump shows as ``"K|U"``) and ``path``
    (ASE's path string).
    """
    path = unitcell.cell.bandpath(npoints=npoints)
    qpoints = np.asarray(path.kpts, dtype=float)
    phonon.run_qpoints(qpoints)
    frequencies = np.asarray(phonon.qpoints.frequencies, dtype=float)
    distances, special_x, special_names = path.get_linear_kpoint_axis()
    labels, positions = _axis_labels(np.asarray(special_x), special_names)
    return {
        "qpoints": qpoints,
        "distances": np.asarray(distances, dtype=float),
        "frequencies": frequencies,
        "labels": labels,
        "label_positions": positions,
        "path": path.path,
    }


def dos(phonon: Any, mesh: Sequence[int] = (12, 12, 12), sigma: float | None = None) -> dict[str, np.ndarray]:
    """Total phonon DOS on a Gamma-centred ``mesh`` of q-points.

    ``sigma`` (THz): Gaussian smearing width; ``None`` uses the tetrahedron method (sharper, but a
    nearly flat band on a coarse mesh gives spikes that a sum over the frequency grid integrates
    poorly). Returns ``frequency_points [nf]`` (THz) and ``total_dos [nf]`` (states/THz per unit cell,
    integrating to ``3 * natoms``).
    """
    phonon.run_mesh(list(mesh), is_gamma_center=True)
    phonon.run_total_dos(sigma=sigma, use_tetrahedron_method=sigma is None)
    total = phonon.total_dos
    return {
        "frequency_points": np.asarray(total.frequency_points, dtype=float),
        "total_dos": np.asarray(total.dos, dtype=float),
    }


def _is_gamma(q: np.ndarray, atol: float = 1e-8) -> bool:
    """Whether the fractional q-point is Gamma or a reciprocal-lattice vector (equivalent to Gamma)."""
    return bool(np.all(np.abs(q - np.round(q)) < atol))


def imaginary_modes(
    frequencies: np.ndarray, qpoints: np.ndarray, tolerance: float = IMAGINARY_TOLERANCE
) -> list[dict[str, Any]]:
    """Every q-point with a frequency below ``-tolerance`` (THz; imaginary modes are negative).

    ``frequencies [nq, nbands]`` (THz), ``qpoints [nq, 3]`` (fractional). At Gamma (and at points
    equivalent to it) the three modes of smallest ``|f|`` are the acoustic translations, zero by the
    acoustic sum rule: they are never reported (a sum-rule violation shows in
    :func:`force_constants_analytic`'s ``info``); the other modes at Gamma are checked as usual.

    Returns one dict per q-point with a mode found: ``index`` (row), ``qpoint`` (tuple) and
    ``frequencies`` (the negative frequencies, THz, ascending).
    """
    freqs = np.asarray(frequencies, dtype=float)
    qs = np.asarray(qpoints, dtype=float)
    if freqs.ndim != 2 or qs.shape != (freqs.shape[0], 3):
        raise ConfigError(f"imaginary_modes: frequencies {freqs.shape} and qpoints {qs.shape} do not match")
    if tolerance < 0:
        raise ConfigError(f"imaginary_modes: tolerance is a magnitude in THz (>= 0), got {tolerance}")
    found = []
    for i, (row, q) in enumerate(zip(freqs, qs)):
        if _is_gamma(q):
            row = np.delete(row, np.argsort(np.abs(row))[:3])
        negative = np.sort(row[row < -tolerance])
        if negative.size:
            found.append({"index": i, "qpoint": tuple(float(x) for x in q), "frequencies": negative.tolist()})
    return found


def plot_phonons(band: dict[str, Any], dos: dict[str, np.ndarray], path: str | Path) -> None:
    """Write a PNG: band structure (from :func:`band_structure`) and DOS (from :func:`dos`) side by side.

    The file is written atomically (:func:`mlip.files.atomic_write_bytes`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_band, ax_dos) = plt.subplots(
        1, 2, sharey=True, figsize=(8, 4.5), gridspec_kw={"width_ratios": [3, 1], "wspace": 0.05}
    )
    try:
        x = np.asarray(band["distances"])
        ax_band.plot(x, np.asarray(band["frequencies"]), color="tab:blue", lw=1.0)
        for pos in band["label_positions"]:
            ax_band.axvline(pos, color="0.6", lw=0.6)
        ax_band.axhline(0.0, color="0.3", lw=0.6, ls="--")
        ax_band.set_xticks(band["label_positions"], band["labels"])
        ax_band.set_xlim(x[0], x[-1])
        ax_band.set_ylabel("Frequency (THz)")
        ax_dos.plot(np.asarray(dos["total_dos"]), np.asarray(dos["frequency_points"]), color="tab:blue", lw=1.0)
        ax_dos.axhline(0.0, color="0.3", lw=0.6, ls="--")
        ax_dos.set_xlabel("DOS (1/THz)")
        ax_dos.set_xlim(left=0.0)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
