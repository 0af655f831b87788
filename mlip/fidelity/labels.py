"""Label access, isolated-atom energies, element counts and atomic extxyz output for the fidelity tools.

The fidelity tools work on lists of :class:`ase.Atoms` (as read by ``ase.io.read(path, ":")``) so that
they do not depend on the training pipeline. Labels are looked up under configurable keys:
``atoms.info[key]`` / ``atoms.arrays[key]`` first, then the results of an attached
``SinglePointCalculator`` (ASE moves ``energy``/``forces``/``stress`` there when it reads extxyz).

Units: energies eV, forces eV/A, stress eV/A^3, virials eV.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from mlip.errors import ConfigError, DataError, frame_error
from mlip.files import atomic_path, atomic_write_text


@dataclass(frozen=True)
class LabelKeys:
    """Names under which labels are stored in extxyz ``info``/``arrays``."""

    energy: str = "energy"
    forces: str = "forces"
    stress: str = "stress"
    virials: str = "virials"


DEFAULT_KEYS = LabelKeys()


def _calc_result(atoms: Atoms, key: str):
    calc = atoms.calc
    if calc is None:
        return None
    results = getattr(calc, "results", {})
    return results.get(key)


def get_energy(atoms: Atoms, key: str = "energy") -> float | None:
    """Total energy (eV) stored under ``key``, or None."""
    value = atoms.info.get(key)
    if value is None:
        value = _calc_result(atoms, key)
    return None if value is None else float(value)


def get_forces(atoms: Atoms, key: str = "forces") -> np.ndarray | None:
    """Forces [N,3] (eV/A) stored under ``key``, or None."""
    value = atoms.arrays.get(key)
    if value is None:
        value = _calc_result(atoms, key)
    return None if value is None else np.asarray(value, dtype=float).reshape(len(atoms), 3)


def _as_3x3(value) -> np.ndarray:
    arr = np.asarray(value, dtype=float).ravel()
    if arr.size == 6:  # Voigt order xx yy zz yz xz xy (ASE)
        xx, yy, zz, yz, xz, xy = arr
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    if arr.size == 9:
        return arr.reshape(3, 3)
    raise ValueError(f"expected 6 or 9 components, got {arr.size}")


def get_tensor(atoms: Atoms, key: str) -> np.ndarray | None:
    """A 3x3 tensor label (stress eV/A^3 or virials eV) under ``key`` (6-Voigt or 9 values), or None."""
    value = atoms.info.get(key)
    if value is None:
        value = _calc_result(atoms, key)
    return None if value is None else _as_3x3(value)


def element_counts(structures: Sequence[Atoms], elements: Sequence[int], path: str = "<data>") -> np.ndarray:
    """Element-count matrix N [F, S]: N[f, s] = number of atoms of element ``elements[s]`` in frame f.

    Raises :class:`DataError` naming the frame if it holds an element not in ``elements``.
    """
    index = {int(z): s for s, z in enumerate(elements)}
    counts = np.zeros((len(structures), len(elements)), dtype=float)
    for f, atoms in enumerate(structures):
        for z in np.asarray(atoms.numbers):
            s = index.get(int(z))
            if s is None:
                raise frame_error(path, f, "numbers", f"element {chemical_symbols[int(z)]} has no reference energy")
            counts[f, s] += 1
    return counts


def elements_of(structures: Sequence[Atoms]) -> list[int]:
    """Sorted atomic numbers present in ``structures``."""
    zs: set[int] = set()
    for atoms in structures:
        zs.update(int(z) for z in np.asarray(atoms.numbers))
    return sorted(zs)


def read_structures(spec: str | os.PathLike) -> list[Atoms]:
    """Read all frames of a file with ASE. ``path@slice`` (e.g. ``train.xyz@:50``) selects frames.

    Raises :class:`DataError` (one line) for a missing, unreadable or empty file.
    """
    import ase.io

    from mlip.data.io import split_selection

    spec = str(spec)
    path, index = split_selection(spec)
    if not Path(path).is_file():
        raise DataError(f"{path}: file not found")
    try:
        frames = ase.io.read(path, index=index)
    except Exception as err:  # ASE raises many types for malformed files
        raise DataError(f"{path}: cannot read ({type(err).__name__}: {err})".splitlines()[0]) from None
    if isinstance(frames, Atoms):
        frames = [frames]
    frames = list(frames)
    if not frames:
        raise DataError(f"{spec}: no frames")
    return frames


def isolated_energies_from_structures(
    structures: Sequence[Atoms], energy_key: str = "energy", path: str = "<isolated>"
) -> dict[int, float]:
    """Isolated-atom energies {Z: E0 (eV)} from the single-atom frames of ``structures``.

    Frames with more than one atom are ignored. Two different energies for one element are an error.
    """
    e0: dict[int, float] = {}
    for f, atoms in enumerate(structures):
        if len(atoms) != 1:
            continue
        energy = get_energy(atoms, energy_key)
        if energy is None or not np.isfinite(energy):
            raise frame_error(path, f, energy_key, "missing or non-finite isolated-atom energy")
        z = int(atoms.numbers[0])
        if z in e0 and not np.isclose(e0[z], energy, rtol=0, atol=1e-8):
            raise frame_error(path, f, energy_key, f"second, different energy for {chemical_symbols[z]}")
        e0[z] = energy
    if not e0:
        raise DataError(f"{path}: no single-atom frames with key '{energy_key}'")
    return e0


def load_isolated_energies(spec: str | os.PathLike | Mapping, energy_key: str = "energy") -> dict[int, float]:
    """Isolated-atom energies {Z: eV} from a mapping, a JSON/YAML file ({"H": -13.6, ...}), an inline
    ``"H=-13.6,C=-1026.9"`` string, or a structure file (any ASE format) of single-atom frames; parsed by
    the one element -> energy parser, :func:`mlip.data.elements.load_element_energies` (two different
    energies for one element are an error here)."""
    from mlip.data.elements import load_element_energies

    return load_element_energies(spec, "isolated-atom energies", energy_key, duplicates="error")


def e0_vector(e0: Mapping[int, float], elements: Sequence[int], what: str = "isolated atoms") -> np.ndarray:
    """E0 values [S] in the order of ``elements``; ConfigError naming a missing element."""
    missing = [chemical_symbols[z] for z in elements if z not in e0]
    if missing:
        raise ConfigError(f"{what}: no energy for element(s) {', '.join(missing)}")
    return np.array([e0[z] for z in elements], dtype=float)


def with_labels(
    atoms: Atoms,
    keys: LabelKeys,
    energy: float | None,
    forces: np.ndarray | None,
    stress: np.ndarray | None,
    virials: np.ndarray | None,
) -> Atoms:
    """A copy of ``atoms`` without calculator whose labels are stored in ``info``/``arrays`` under ``keys``."""
    out = atoms.copy()
    out.calc = None
    # keep calculator results that are not rewritten here (e.g. DFT 'energy' next to a 'REF_energy' key)
    for key, value in (getattr(atoms.calc, "results", None) or {}).items():
        if key in (keys.energy, keys.forces, keys.stress, keys.virials):
            continue
        arr = np.asarray(value)
        if arr.ndim >= 1 and arr.shape[0] == len(out) and key not in ("stress", "virial", "virials"):
            out.arrays.setdefault(key, arr.copy())
        else:
            out.info.setdefault(key, value)
    for key in (keys.energy, keys.stress, keys.virials):
        out.info.pop(key, None)
    if keys.forces in out.arrays:
        del out.arrays[keys.forces]
    if energy is not None:
        out.info[keys.energy] = float(energy)
    if forces is not None:
        out.arrays[keys.forces] = np.asarray(forces, dtype=float).reshape(len(out), 3)
    if stress is not None:
        out.info[keys.stress] = np.asarray(stress, dtype=float).reshape(3, 3)
    if virials is not None:
        out.info[keys.virials] = np.asarray(virials, dtype=float).reshape(3, 3)
    return out


def write_json(path: str | os.PathLike, record: dict) -> None:
    """Atomic JSON write (sorted keys, indented)."""
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


def write_extxyz(path: str | os.PathLike, structures: Sequence[Atoms]) -> None:
    """Write frames as extended XYZ atomically (temp file in the same folder, then os.replace)."""
    import ase.io

    with atomic_path(path, suffix=".xyz") as tmp:
        ase.io.write(tmp, list(structures), format="extxyz")
