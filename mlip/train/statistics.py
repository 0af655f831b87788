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

from mlip.data import stats
from mlip.data.configuration import Configuration
from mlip.data.io import is_isolated_atom
from mlip.errors import ConfigError


def _parse_mapping(mapping: Mapping[Any, Any], where: str) -> dict[int, float]:
    """Check a mapping element symbol or Z -> number (eV); keys as given."""
    for key, value in mapping.items():
        is_z = isinstance(key, int) or (isinstance(key, str) and key.strip().isdigit())
        if not is_z and not (isinstance(key, str) and key.strip() in _symbol_to_z):
            raise ConfigError(f"config key '{where}.{key}': not an element symbol or atomic number")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{where}.{key}': expected a number, got {value!r}")
    return dict(mapping)


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


def atomic_energies(
    spec: str | Mapping[str, float],
    train: Sequence[Configuration],
    isolated: Sequence[Configuration],
    zs: Sequence[int],
    head: str = "Default",
    where: str = "data.e0s",
) -> dict[int, float]:
    """E0 per atomic number for every element of ``zs`` (eV): ``isolated``, ``fit``, a mapping, or a
    JSON/YAML file holding a mapping (element symbol or Z -> eV)."""
    if isinstance(spec, Mapping):
        spec = _parse_mapping(spec, where)
    elif spec not in ("isolated", "fit"):
        spec = _read_mapping_file(spec, where)
    frames = list(isolated) if spec == "isolated" else [c for c in train if not is_isolated_atom(c)] or list(train)
    return stats.compute_e0s(spec, frames, zs, head)


def avg_num_neighbors(configs: Sequence[Configuration], r_max: float) -> float:
    """Mean number of neighbours within ``r_max`` (A) over all atoms of ``configs`` (not isolated atoms)."""
    molecular = [c for c in configs if not is_isolated_atom(c)] or list(configs)
    value = stats.mean_neighbor_count(molecular, r_max)
    return value if value > 0 else 1.0


def scale_shift(configs: Sequence[Configuration], e0: Mapping[int, float], mode: str) -> tuple[float, float]:
    """(scale, shift): shift is the mean interaction energy per atom ``(E - sum E0) / N`` (eV/atom);
    scale is the RMS force component (``rms_forces``), the std of the interaction energy per atom
    (``std``), or 1 (``none``). Falls back to 1 when the statistic is zero or unavailable."""
    molecular = [c for c in configs if not is_isolated_atom(c)] or list(configs)
    per_atom = stats.interaction_energies_per_atom(molecular, e0)
    shift = float(per_atom.mean()) if per_atom.size else 0.0
    if mode == "none":
        return 1.0, shift
    if mode == "std":
        scale = float(per_atom.std()) if per_atom.size > 1 else 1.0
    else:
        rms = stats.rms_forces(molecular)
        scale = 1.0 if rms is None else float(rms)
    if not np.isfinite(scale) or scale < 1e-12:
        scale = 1.0
    return scale, shift
