"""Training-set statistics that become model hyper-parameters (thin adapter over :mod:`mlip.data.stats`).

- E0s (eV per element) from ``isolated`` atoms, a least-squares ``fit``, a mapping or a JSON/YAML file;
- the mean neighbour count within ``r_max`` (normalisation of the convolution);
- scale (RMS of the force components, eV/A, or std of the interaction energy per atom) and shift (mean
  interaction energy per atom, eV/atom).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from ase.data import atomic_numbers as _symbol_to_z

from mlip.data.configuration import Configuration
from mlip.errors import ConfigError


def _parse_mapping(mapping: Mapping[Any, Any], where: str) -> dict[int, float]:
    out: dict[int, float] = {}
    for key, value in mapping.items():
        if isinstance(key, int) or (isinstance(key, str) and key.strip().isdigit()):
            z = int(key)
        elif isinstance(key, str) and key.strip() in _symbol_to_z:
            z = _symbol_to_z[key.strip()]
        else:
            raise ConfigError(f"config key '{where}.{key}': not an element symbol or atomic number")
        try:
            out[z] = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{where}.{key}': expected a number, got {value!r}") from None
    return out


def _read_mapping_file(path: str, where: str) -> dict[int, float]:
    text = Path(path).read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"config key '{where}': {path} is neither JSON nor YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{where}': {path} must hold a mapping element -> energy")
    return _parse_mapping(data, where)


def fit_e0s(configs: Sequence[Configuration], zs: Sequence[int]) -> dict[int, float]:
    """Least squares ``argmin_c ||E - N c||^2`` over frames with an energy (N: element counts).

    Elements absent from every frame get 0.
    """
    labelled = [c for c in configs if c.energy is not None]
    if not labelled:
        raise ConfigError("config key 'data.e0s': 'fit' needs training frames with energies")
    index = {z: i for i, z in enumerate(zs)}
    counts = np.zeros((len(labelled), len(zs)))
    for row, c in enumerate(labelled):
        for z in c.numbers:
            counts[row, index[int(z)]] += 1
    energies = np.array([c.energy for c in labelled], dtype=float)
    coef, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    present = counts.sum(axis=0) > 0
    return {z: float(coef[i]) if present[i] else 0.0 for z, i in index.items()}


def atomic_energies(
    spec: str | Mapping[str, float],
    train: Sequence[Configuration],
    isolated: Sequence[Configuration],
    zs: Sequence[int],
    where: str = "data.e0s",
) -> dict[int, float]:
    """E0 per atomic number for every element of ``zs`` (eV)."""
    if isinstance(spec, Mapping):
        e0 = _parse_mapping(spec, where)
    elif spec == "fit":
        return fit_e0s(train, zs)
    elif spec == "isolated":
        e0 = {}
        for c in isolated:
            if c.n_atoms == 1 and c.energy is not None:
                e0[int(c.numbers[0])] = float(c.energy)
        if not e0:
            raise ConfigError(f"config key '{where}': 'isolated' but no isolated-atom frame with an energy was found")
    else:
        e0 = _read_mapping_file(str(spec), where)
    missing = [z for z in zs if z not in e0]
    if missing:
        from ase.data import chemical_symbols

        raise ConfigError(
            f"config key '{where}': no E0 for element(s) {', '.join(chemical_symbols[z] for z in missing)}"
        )
    return {z: e0[z] for z in zs}


def avg_num_neighbors(configs: Sequence[Configuration], r_max: float) -> float:
    """Mean number of neighbours within ``r_max`` over all atoms of ``configs``."""
    from mlip.data.graph import configuration_to_graph

    edges = atoms = 0
    for c in configs:
        g = configuration_to_graph(c, r_max, [c.head])
        edges += int(g["edge_index"].shape[1])
        atoms += c.n_atoms
    return float(edges / atoms) if atoms else 1.0


def scale_shift(configs: Sequence[Configuration], e0: Mapping[int, float], mode: str) -> tuple[float, float]:
    """(scale, shift): shift is the mean interaction energy per atom ``(E - sum E0) / N`` (eV/atom);
    scale is the RMS force component (``rms_forces``), the std of the interaction energy per atom
    (``std``), or 1 (``none``). Falls back to 1 when the statistic is zero or unavailable."""
    per_atom = np.array(
        [(c.energy - sum(e0[int(z)] for z in c.numbers)) / c.n_atoms for c in configs if c.energy is not None]
    )
    shift = float(per_atom.mean()) if per_atom.size else 0.0
    if mode == "none":
        return 1.0, shift
    if mode == "std":
        scale = float(per_atom.std()) if per_atom.size > 1 else 1.0
    else:
        forces = [c.forces.reshape(-1) for c in configs if c.forces is not None]
        scale = float(np.sqrt(np.mean(np.concatenate(forces) ** 2))) if forces else 1.0
    if not np.isfinite(scale) or scale < 1e-12:
        scale = 1.0
    return scale, shift
