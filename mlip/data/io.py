"""Reading (and writing) labelled structures from any ASE-readable file (extended XYZ first).

Labels are looked up, for each user-chosen key, in ``atoms.info`` (per-frame values), ``atoms.arrays``
(per-atom values) and the results of an attached single-point calculator (ASE >= 3.23 moves the
extxyz keys ``energy``/``forces``/``stress`` there). A label that a frame does not carry is ``None``
and contributes no loss. Every problem with the input raises :class:`mlip.errors.DataError` with one
line naming the file, the frame index and the key.

Units as in the files: eV, eV/A, eV/A^3 (ASE sign), virials in eV.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlip.data.configuration import PROPERTIES, Configuration
from mlip.data.neighbors import neighbor_list
from mlip.errors import DataError, MLIPError, frame_error
from mlip.files import atomic_path

ISOLATED_ATOM_TYPES = ("IsolatedAtom", "isolated_atom")
"""``config_type`` values that mark an isolated-atom (E0) frame."""

MIN_DISTANCE = 0.1
"""Two atoms closer than this (Angstrom, periodic images included) are an input error."""


_DISTANCE_SEARCH_RADIUS = 1.5


def is_isolated_atom(config: Configuration) -> bool:
    """An E0 frame: ``config_type`` IsolatedAtom/isolated_atom, or one atom and no periodicity."""
    if config.config_type in ISOLATED_ATOM_TYPES:
        return True
    return config.n_atoms == 1 and not config.pbc.any()


def split_isolated(frames: Sequence[Configuration]) -> tuple[list[Configuration], list[Configuration]]:
    """``(molecular, isolated)``: the frames that are not / are isolated atoms (:func:`is_isolated_atom`),
    each list in input order. Training splits them here, once, as the frames are read."""
    molecular: list[Configuration] = []
    isolated: list[Configuration] = []
    for c in frames:
        (isolated if is_isolated_atom(c) else molecular).append(c)
    return molecular, isolated


def split_selection(spec: str | os.PathLike) -> tuple[str, str]:
    """``"path@slice"`` -> ``("path", "slice")``: ``train.xyz@0:10``, ``train.xyz@-5:``, ``train.xyz@::2``,
    ``train.xyz@3`` (ASE index syntax, frames counted from 0). A spec without ``@``, or the name of an existing
    file (which may hold an ``@``), is the whole file: ``(spec, ":")``. The one parser of selections
    (mlip-select, mlip-align, mlip-eval, mlip-uncertainty, mlip-bonds).

    Raises:
        DataError: the part after the last ``@`` is not a frame index or slice, or its step is not positive
            (ASE's extxyz reader returns no frames for a backwards slice).
    """
    text = str(spec)
    if "@" not in text or Path(text).exists():
        return text, ":"
    path, index = text.rsplit("@", 1)
    from ase.io.formats import string2index

    try:
        parsed = string2index(index)
    except (TypeError, ValueError):
        parsed = None
    if not index or not isinstance(parsed, (int, slice)):
        raise DataError(f"{text}: '{index}' after '@' is not a frame index or slice (e.g. {path}@0:10, {path}@-5:)")
    if isinstance(parsed, slice) and parsed.step is not None and parsed.step < 1:
        raise DataError(f"{text}: the step of '{index}' must be at least 1 (frames are read forwards)")
    return path, index


def read_configurations(
    path: str | os.PathLike,
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    virials_key: str = "virials",
    head_key: str = "head",
    config_type_key: str = "config_type",
    weight_key: str = "config_weight",
    head: str | None = None,
    index: str | int | slice = ":",
    required: Sequence[str] = (),
    require_any: Sequence[str] = (),
    allowed_numbers: Iterable[int] | None = None,
    min_distance: float | None = MIN_DISTANCE,
    format: str | None = None,
) -> list[Configuration]:
    """Read every selected frame of ``path`` into :class:`Configuration` objects.

    Args:
        path: any file ASE can read (extended XYZ first).
        energy_key, forces_key, stress_key, virials_key: where the labels live (info, arrays or a
            single-point calculator). Stress/virials may be 3x3, 9 or Voigt-6 (xx yy zz yz xz xy).
        head_key: info key naming the head of a frame ("Default" if absent).
        config_type_key: info key of the sampling group ("Default" if absent).
        weight_key: info key of the frame weight (default 1). Per-property weights are read from
            ``config_energy_weight``, ``config_forces_weight``, ``config_stress_weight`` and
            ``config_virials_weight`` (the mace-torch names).
        head: if given, every frame of this file gets this head (overrides ``head_key``).
        index: ASE index of the frames to read (":" = all, "10:20", 3, ...).
        required: properties every frame must carry (for example ``("energy", "forces")``);
            isolated-atom frames only need ``energy``.
        require_any: properties at least one frame of the file must carry.
        allowed_numbers: if given, atomic numbers outside this set are an error. Z = 0 ("X")
            is always an error.
        min_distance: two atoms closer than this (A, periodic images included) are an error;
            ``None`` disables the check.
        format: ASE format name; guessed from the file when ``None``.

    Raises:
        DataError: one line naming the file, the frame index and the key.
    """
    path_str = str(path)
    keys = {"energy": energy_key, "forces": forces_key, "stress": stress_key, "virials": virials_key}
    for prop in (*required, *require_any):
        if prop not in PROPERTIES:
            raise ValueError(f"unknown property {prop!r}; expected one of {PROPERTIES}")
    allowed = None if allowed_numbers is None else {int(z) for z in allowed_numbers}
    configs: list[Configuration] = []
    for frame, atoms in _iter_frames(path_str, index, format):
        config = _atoms_to_configuration(
            atoms, path_str, frame, keys=keys, head_key=head_key,
            config_type_key=config_type_key, weight_key=weight_key, head=head,
        )
        _validate(config, atoms, path_str, frame, keys, required, allowed, min_distance)
        configs.append(config)
    if not configs:
        raise frame_error(path_str, None, None, "no frames read (empty file, not a structure file, or an empty index)")
    for prop in require_any:
        if not any(c.has(prop) for c in configs):
            raise frame_error(
                path_str, None, keys[prop],
                f"no frame carries the {prop} label (looked in info, arrays and calculator results)",
            )
    return configs


def _frame_numbers(index: str | int | slice) -> tuple[int, int] | None:
    """(start, step) of a non-negative slice index, so errors can name the frame in the file."""
    if isinstance(index, int):
        return (index, 1) if index >= 0 else None
    if isinstance(index, str):
        from ase.io.formats import string2index

        try:
            index = string2index(index)
        except ValueError:
            return None
        if isinstance(index, int):
            return (index, 1) if index >= 0 else None
    if isinstance(index, slice):
        start = index.start or 0
        step = index.step or 1
        if start >= 0 and step > 0:
            return start, step
    return None


def count_frames(path: str | os.PathLike, format: str | None = None) -> int:
    """Number of frames in ``path``: one pass with ASE, one frame in memory at a time."""
    import ase.io

    try:
        return sum(1 for _ in ase.io.iread(str(path), index=":", format=format))
    except Exception as err:  # noqa: BLE001 - ASE raises many types for unreadable files
        raise frame_error(str(path), None, None, f"cannot read as a structure file ({_describe(err)})") from None


def _resolve_from_end(path: str, index: str | int | slice, format: str | None) -> str | int | slice:
    """``index`` with a negative frame, start or stop (forward steps) resolved against :func:`count_frames`;
    anything else, or a frame before the first, unchanged (ASE then reports it)."""
    from ase.io.formats import string2index

    sel = string2index(index) if isinstance(index, str) else index
    if isinstance(sel, int):
        n = sel + count_frames(path, format) if sel < 0 else sel
        return n if n >= 0 else index
    if isinstance(sel, slice) and (sel.step or 1) > 0:
        return slice(*sel.indices(count_frames(path, format)))
    return index


def _iter_frames(path: str, index: str | int | slice, format: str | None):
    """Yield (frame index in the file, Atoms); ASE's exceptions become one-line DataErrors."""
    import ase.io

    if not Path(path).exists():
        raise frame_error(path, None, None, "file not found")
    if Path(path).is_dir():
        raise frame_error(path, None, None, "is a directory, not a structure file")
    if os.path.getsize(path) == 0:
        raise frame_error(path, None, None, "empty file")
    if isinstance(index, str):
        from ase.io.formats import string2index

        try:
            string2index(index)
        except ValueError:
            raise frame_error(path, None, "index", f"not a frame index or slice: {index!r}") from None
    if _frame_numbers(index) is None:  # counted from the end: resolve it, so frames are named by their number
        index = _resolve_from_end(path, index, format)
    numbering = _frame_numbers(index)
    count = 0
    if isinstance(index, int):
        reader: Any = iter(_read_single(path, index, format))
    else:
        try:
            reader = ase.io.iread(path, index=index, format=format)
        except Exception as err:  # noqa: BLE001 - ASE raises many types for unreadable files
            raise frame_error(path, None, None, f"cannot read as a structure file ({_describe(err)})") from None
    while True:
        frame = numbering[0] + count * numbering[1] if numbering else count
        try:
            atoms = next(reader)
        except StopIteration:
            return
        except MLIPError:
            raise
        except Exception as err:  # noqa: BLE001
            from ase.io.formats import UnknownFileTypeError

            unknown_format = count == 0 and isinstance(err, UnknownFileTypeError)
            where = None if unknown_format or not (count > 0 or numbering) else frame
            raise frame_error(path, where, None, f"cannot read as a structure file ({_describe(err)})") from None
        yield frame, atoms
        count += 1


def _read_single(path: str, index: int, format: str | None):
    import ase.io

    try:
        return [ase.io.read(path, index=index, format=format)]
    except Exception as err:  # noqa: BLE001
        raise frame_error(path, index, None, f"cannot read as a structure file ({_describe(err)})") from None


def _describe(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if isinstance(err, KeyError):
        text = f"unknown element or key {text}"
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def describe_keys(path: str | os.PathLike, index: int = 0) -> str:
    """The label keys one frame of ``path`` carries: "info: a, b; arrays: c; calculator: d"."""
    frames = list(_iter_frames(str(path), index, None))
    atoms = frames[0][1]
    calc = getattr(atoms, "calc", None)
    arrays = sorted(set(atoms.arrays) - {"numbers", "positions"})
    results = sorted(getattr(calc, "results", None) or {})
    return (f"info: {', '.join(sorted(atoms.info)) or '-'}; arrays: {', '.join(arrays) or '-'}; "
            f"calculator: {', '.join(results) or '-'}")


def _lookup(atoms: Any, key: str) -> Any:
    """The value stored under ``key`` in info, arrays or calculator results, else None."""
    if key in atoms.info:
        return atoms.info[key]
    if key in atoms.arrays and key not in ("numbers", "positions"):
        return atoms.arrays[key]
    calc = getattr(atoms, "calc", None)
    results = getattr(calc, "results", None)
    if results and key in results:
        return results[key]
    return None


def _available_keys(atoms: Any) -> str:
    names = sorted(set(atoms.info) | (set(atoms.arrays) - {"numbers", "positions"}))
    calc = getattr(atoms, "calc", None)
    names += sorted(f"calc.{k}" for k in (getattr(calc, "results", None) or {}))
    return ", ".join(names) if names else "none"


def _as_float(value: Any, path: str, frame: int, key: str, what: str) -> float:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise frame_error(path, frame, key, f"{what} is not a number: {value!r}") from None
    if arr.size != 1:
        raise frame_error(path, frame, key, f"{what} must be one number, got shape {arr.shape}")
    return float(arr.reshape(()))


def _as_array(value: Any, path: str, frame: int, key: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise frame_error(path, frame, key, f"not numeric: {value!r}") from None


def _as_3x3(value: Any, path: str, frame: int, key: str, name: str) -> np.ndarray:
    arr = _as_array(value, path, frame, key)
    if arr.size == 9:
        return arr.reshape(3, 3)
    if arr.size == 6:
        # Voigt order xx, yy, zz, yz, xz, xy (ASE).
        xx, yy, zz, yz, xz, xy = arr.reshape(6)
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    raise frame_error(path, frame, key, f"{name} must have 9 or 6 (Voigt) components, got shape {arr.shape}")


def _atoms_to_configuration(
    atoms: Any, path: str, frame: int, *, keys: dict[str, str], head_key: str,
    config_type_key: str, weight_key: str, head: str | None,
) -> Configuration:
    n = len(atoms)
    energy = _lookup(atoms, keys["energy"])
    if energy is not None:
        energy = _as_float(energy, path, frame, keys["energy"], "energy")
    forces = _lookup(atoms, keys["forces"])
    if forces is not None:
        forces = _as_array(forces, path, frame, keys["forces"])
        if forces.shape != (n, 3):
            raise frame_error(path, frame, keys["forces"], f"forces have shape {forces.shape}, expected ({n}, 3) for {n} atoms")
    stress = _lookup(atoms, keys["stress"])
    if stress is not None:
        stress = _as_3x3(stress, path, frame, keys["stress"], "stress")
    virials = _lookup(atoms, keys["virials"])
    if virials is not None:
        virials = _as_3x3(virials, path, frame, keys["virials"], "virials")
    weight = _as_float(atoms.info.get(weight_key, 1.0), path, frame, weight_key, "weight")
    property_weights = {}
    for prop in PROPERTIES:
        wkey = f"config_{prop}_weight"
        property_weights[prop] = _as_float(atoms.info.get(wkey, 1.0), path, frame, wkey, "weight")
    for wkey, value in [(weight_key, weight)] + [(f"config_{p}_weight", w) for p, w in property_weights.items()]:
        if not math.isfinite(value) or value < 0:
            raise frame_error(path, frame, wkey, f"weight must be finite and >= 0, got {value}")
    frame_head = head if head is not None else str(atoms.info.get(head_key, "Default"))
    return Configuration(
        numbers=atoms.numbers.astype(np.int64),
        positions=atoms.positions,
        cell=np.asarray(atoms.cell[:], dtype=np.float64),
        pbc=np.asarray(atoms.pbc, dtype=bool),
        energy=energy,
        forces=forces,
        stress=stress,
        virials=virials,
        weight=weight,
        property_weights=property_weights,
        config_type=str(atoms.info.get(config_type_key, "Default")),
        head=frame_head,
        source=f"{path}:{frame}",
    )


def _validate(
    config: Configuration, atoms: Any, path: str, frame: int, keys: dict[str, str], required: Sequence[str],
    allowed: set[int] | None, min_distance: float | None,
) -> None:
    # Species.
    if config.n_atoms == 0:
        raise frame_error(path, frame, "species", "frame has no atoms")
    bad = config.numbers[(config.numbers <= 0) | (config.numbers > 118)]
    if bad.size:
        raise frame_error(path, frame, "species", f"unknown element (atomic number {int(bad[0])}, e.g. symbol 'X')")
    if allowed is not None:
        unknown = sorted({int(z) for z in config.numbers} - allowed)
        if unknown:
            from ase.data import chemical_symbols

            names = ", ".join(f"{chemical_symbols[z]} (Z={z})" for z in unknown)
            known = ", ".join(chemical_symbols[z] for z in sorted(allowed))
            raise frame_error(path, frame, "species", f"element {names} is not one of the model's elements ({known})")
    # Geometry.
    if not np.isfinite(config.positions).all():
        raise frame_error(path, frame, "positions", "positions contain NaN or inf")
    if not np.isfinite(config.cell).all():
        raise frame_error(path, frame, "cell", "cell contains NaN or inf")
    # Required labels.
    isolated = is_isolated_atom(config)
    for prop in required:
        if isolated and prop != "energy":
            continue
        if not config.has(prop):
            raise frame_error(path, frame, keys[prop], f"missing {prop} label (found keys: {_available_keys(atoms)})")
    # Finite labels.
    for prop in PROPERTIES:
        value = getattr(config, prop)
        if value is not None and not np.isfinite(value).all():
            raise frame_error(path, frame, keys[prop], f"{prop} contains NaN or inf")
    if config.stress is not None and not config.pbc.any():
        raise frame_error(path, frame, keys["stress"], "non-periodic frame (pbc F F F) carries a stress label")
    if config.pbc.any():
        periodic = config.cell[config.pbc]
        if np.linalg.matrix_rank(periodic, tol=1e-8) < periodic.shape[0]:
            raise frame_error(path, frame, "cell", f"periodic frame has a degenerate cell {config.cell.tolist()}")
    if min_distance is not None and config.n_atoms > 0:
        # Search a larger radius and filter: vesin's cell list gets very slow for tiny cutoffs.
        search = max(float(min_distance), _DISTANCE_SEARCH_RADIUS)
        sender, receiver, _, distances = neighbor_list(config.positions, config.cell, config.pbc, search)
        close = distances < min_distance
        sender, receiver, distances = sender[close], receiver[close], distances[close]
        if sender.size:
            k = int(np.argmin(distances))
            raise frame_error(
                path, frame, "positions",
                f"atoms {int(sender[k])} and {int(receiver[k])} are {distances[k]:.4f} A apart (< {min_distance} A)",
            )


def write_configurations(
    path: str | os.PathLike,
    configs: Sequence[Configuration],
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    virials_key: str = "virials",
) -> None:
    """Write configurations as extended XYZ (atomically: temp file + rename).

    Labels go to ``atoms.info``/``atoms.arrays`` under the given keys; weights, config_type and head
    under the names :func:`read_configurations` reads by default.
    """
    import ase.io
    from ase import Atoms

    frames = []
    for c in configs:
        atoms = Atoms(numbers=c.numbers, positions=c.positions, cell=c.cell, pbc=c.pbc)
        if c.energy is not None:
            atoms.info[energy_key] = float(c.energy)
        if c.forces is not None:
            atoms.arrays[forces_key] = np.asarray(c.forces, dtype=np.float64)
        if c.stress is not None:
            atoms.info[stress_key] = np.asarray(c.stress, dtype=np.float64).reshape(3, 3)
        if c.virials is not None:
            atoms.info[virials_key] = np.asarray(c.virials, dtype=np.float64).reshape(3, 3)
        atoms.info["config_type"] = c.config_type
        atoms.info["head"] = c.head
        if c.weight != 1.0:
            atoms.info["config_weight"] = c.weight
        for prop, w in c.property_weights.items():
            if w != 1.0:
                atoms.info[f"config_{prop}_weight"] = w
        frames.append(atoms)
    with atomic_path(path) as tmp:
        ase.io.write(tmp, frames, format="extxyz")
