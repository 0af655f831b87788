"""Element -> energy mappings (E0s, isolated-atom energies): the one parser of mlip.

Every place that accepts "an energy per element" (``data.e0s``, ``tea.source_atoms``/``target_atoms``,
``mlip-align``) goes through :func:`load_element_energies`. Accepted forms:

- a mapping ``{element symbol or atomic number: energy}`` (keys ``"H"``, ``1`` or ``"1"``);
- an inline string ``"H=-13.6,C=-1026.9"``;
- a JSON or YAML file (``.json``, ``.yaml``, ``.yml``) holding such a mapping;
- a structure file (extended XYZ or anything ASE reads) whose single-atom frames carry the energies.

Energies are in eV (per atom of the element). The result is always ``{Z: energy}`` with integer keys.
Errors are one line naming the config key or the file and the element as the user wrote it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlip.errors import ConfigError, DataError

MAPPING_SUFFIXES = (".json", ".yaml", ".yml")
"""File suffixes read as a mapping element -> energy (anything else is read as structures)."""


def symbol(z: int) -> str:
    """Chemical symbol of atomic number ``z`` (``"14"`` -> ``"Si"``; unknown numbers as digits)."""
    from ase.data import chemical_symbols

    z = int(z)
    return chemical_symbols[z] if 0 < z < len(chemical_symbols) else str(z)


def symbols(zs: Iterable[int]) -> str:
    """Comma-separated symbols: ``[1, 6, 8]`` -> ``"H, C, O"``."""
    return ", ".join(symbol(z) for z in zs)


def element_number(key: Any) -> int | None:
    """Atomic number of an element symbol (``"Si"``) or number (``14``, ``"14"``); None if neither."""
    from ase.data import atomic_numbers

    if isinstance(key, bool):
        return None
    if isinstance(key, (int, np.integer)):
        return int(key) if 0 < int(key) < 119 else None
    text = str(key).strip()
    if text.isdigit():
        return int(text) if 0 < int(text) < 119 else None
    z = atomic_numbers.get(text)
    return int(z) if z else None


def _bad(where: str, key: Any, what: str, in_file: bool) -> Exception:
    if in_file:
        return DataError(f"{where}: key '{key}': {what}")
    if " " in where:  # a description, not a dotted config key
        return ConfigError(f"{where}: '{key}': {what}")
    return ConfigError(f"config key '{where}.{key}': {what}")


def parse_element_energies(mapping: Mapping[Any, Any], where: str, in_file: bool = False) -> dict[int, float]:
    """``{Z: eV}`` from a mapping element symbol or Z -> number.

    ``where`` names the origin in messages: a dotted config key (ConfigError) or, with ``in_file``, a
    file path (DataError)."""
    out: dict[int, float] = {}
    for key, value in mapping.items():
        z = element_number(key)
        if z is None:
            raise _bad(where, key, "not an element symbol or atomic number", in_file)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    raise _bad(where, key, f"expected a number, got {value!r}", in_file) from None
            else:
                raise _bad(where, key, f"expected a number, got {value!r}", in_file)
        out[z] = float(value)
    return out


def parse_inline(text: str, where: str) -> dict[int, float]:
    """``{Z: eV}`` from ``"H=-13.6,C=-1026.9"`` (ConfigError naming ``where`` and the bad item)."""
    items: dict[str, str] = {}
    for item in text.split(","):
        if "=" not in item:
            raise ConfigError(f"{where} '{text}': expected SYMBOL=ENERGY items separated by commas")
        sym, val = item.split("=", 1)
        items[sym.strip()] = val.strip()
    return parse_element_energies(items, where)


def read_mapping_file(path: str | os.PathLike) -> dict[int, float]:
    """``{Z: eV}`` from a JSON or YAML file holding a mapping (DataError naming the file)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    text = p.read_text()
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        kind = "JSON" if p.suffix == ".json" else "YAML"
        raise DataError(f"{p}: invalid {kind} ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DataError(f"{p}: expected a mapping element -> energy (eV), e.g. {{H: -13.6, C: -1026.9}}; for "
                        "isolated-atom frames give a structure file (e0s: isolated_atoms.xyz)")
    return parse_element_energies(data, str(p), in_file=True)


def isolated_energies(configs: Sequence[Any], source: str, duplicates: str = "mean") -> dict[int, float]:
    """``{Z: eV}`` from the single-atom frames (``n_atoms == 1``, with an energy) of ``configs``.

    ``duplicates``: ``"mean"`` averages several frames of one element; ``"error"`` refuses two different
    energies (more than 1e-8 eV apart). ``source`` names the file in messages."""
    found: dict[int, list[float]] = {}
    for c in configs:
        if c.n_atoms == 1 and c.energy is not None:
            found.setdefault(int(c.numbers[0]), []).append(float(c.energy))
    if duplicates == "error":
        for z, values in found.items():
            if max(values) - min(values) > 1e-8:
                raise DataError(f"{source}: two different energies for {symbol(z)}: {values[0]} and {values[1]}")
    if not found:
        raise DataError(f"{source}: no single-atom frame with an energy (isolated atoms are 1-atom frames)")
    return {z: float(np.mean(v)) for z, v in found.items()}


def is_mapping_spec(spec: Any) -> bool:
    """True when ``spec`` is a mapping, an inline ``H=..`` string or a JSON/YAML file name."""
    if isinstance(spec, Mapping):
        return True
    text = str(spec)
    return text.lower().endswith(MAPPING_SUFFIXES) or (not Path(text).exists() and "=" in text)


def load_element_energies(
    spec: str | os.PathLike | Mapping[Any, Any], where: str, energy_key: str = "energy", duplicates: str = "mean"
) -> dict[int, float]:
    """``{Z: eV}`` from any accepted form (see the module docstring).

    Args:
        spec: a mapping, an inline ``"H=-13.6,..."`` string, a JSON/YAML file or a structure file.
        where: the config key (or option) the value came from, named in messages.
        energy_key: label key of the energy in a structure file.
        duplicates: ``"mean"`` or ``"error"`` for several single-atom frames of one element.
    """
    if isinstance(spec, Mapping):
        return parse_element_energies(spec, where)
    text = str(spec)
    if not Path(text).exists() and "=" in text:
        return parse_inline(text, where)
    if text.lower().endswith(MAPPING_SUFFIXES):
        return read_mapping_file(text)
    from mlip.data.io import read_configurations

    return isolated_energies(read_configurations(text, energy_key=energy_key), text, duplicates)


def missing_elements_error(missing: Sequence[int], where: str, data_files: Sequence[str], source: str) -> DataError:
    """One line: elements of the data that the E0 source lacks, naming the data and the E0 source."""
    data = ", ".join(str(f) for f in data_files) or "the training data"
    return DataError(
        f"{where}: no energy for {symbols(missing)} (found in {data}) in {source}; "
        "add the isolated atoms of these elements or use e0s: fit / average"
    )
