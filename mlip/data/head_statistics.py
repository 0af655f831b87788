"""The per-head statistics record: one shape for in-memory frames and for on-disk (.h5) datasets.

A :class:`HeadStatistics` is what training needs from a head's training frames to build the model's
hyper-parameters (E0s, scale, shift, mean neighbour count). It is computed once per run: from frames in
memory by :func:`head_statistics`, or streamed over an .h5 file by
:func:`mlip.data.ondisk_write.compute_ondisk_statistics` and stored in the file (JSON, element keys as
strings: :func:`to_json` / :func:`from_json`). :func:`scale_shift` and :func:`mean_neighbours` turn
records into the numbers the model uses.

Units: E0s in eV per atom of the element; neighbour counts are directed edges within ``r_max`` (A);
``rms_forces`` in eV/A (root mean square over all force components); ``mean``/``std`` of the
interaction energy per atom ``(E - sum_i E0[Z_i]) / N`` in eV/atom (population standard deviation).
Isolated-atom frames are left out of every statistic except E0s and ``n_frames``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import numpy as np

from mlip.data.configuration import PROPERTIES, Configuration
from mlip.data.io import is_isolated_atom
from mlip.data.neighbors import neighbor_list


class HeadStatistics(TypedDict):
    """Statistics of one head's training frames (see the module docstring for units)."""

    e0s: dict[int, float]
    """E0 per atomic number (eV); empty when not computed (e.g. a validation file)."""
    e0s_spec: Any
    """How the E0s were obtained: ``"isolated"``, ``"fit"``/``"average"``, ``"mapping"`` or None."""
    n_frames: int
    """All frames of the head, isolated atoms included."""
    n_atoms: int
    """Atoms of the frames that are not isolated atoms."""
    n_edges: int
    """Directed edges within the statistics cutoff over those frames."""
    avg_num_neighbors: float
    """``n_edges / n_atoms`` (0.0 without atoms)."""
    rms_forces: float | None
    mean_interaction_energy: float | None
    std_interaction_energy: float | None
    label_counts: dict[str, int]
    """Frames carrying each label (energy, forces, stress, virials)."""


def make_record(
    e0s: Mapping[int, float], e0s_spec: Any, n_frames: int, n_atoms: int, n_edges: int,
    rms_forces: float | None, mean: float | None, std: float | None, label_counts: Mapping[str, int],
) -> HeadStatistics:
    """Assemble a record (``avg_num_neighbors`` derived from the edge and atom counts)."""
    return HeadStatistics(
        e0s={int(z): float(v) for z, v in e0s.items()}, e0s_spec=e0s_spec, n_frames=int(n_frames),
        n_atoms=int(n_atoms), n_edges=int(n_edges), avg_num_neighbors=n_edges / n_atoms if n_atoms else 0.0,
        rms_forces=rms_forces, mean_interaction_energy=mean, std_interaction_energy=std,
        label_counts={p: int(label_counts.get(p, 0)) for p in PROPERTIES},
    )


def spec_name(spec: Any) -> Any:
    """The ``e0s_spec`` of a record for an E0 setting: the setting's name, or ``"mapping"``."""
    return spec if isinstance(spec, str) or spec is None else "mapping"


def split_isolated(frames: Sequence[Configuration]) -> tuple[list[Configuration], list[Configuration]]:
    """``(molecular, isolated)``: frames that are / are not isolated atoms, each in input order."""
    molecular, isolated = [], []
    for c in frames:
        (isolated if is_isolated_atom(c) else molecular).append(c)
    return molecular, isolated


def head_statistics(
    frames: Sequence[Configuration], e0s: Mapping[int, float], r_max: float | None, e0s_spec: Any = None,
) -> HeadStatistics:
    """The record of in-memory ``frames`` (one head) for the given E0s (eV).

    Neighbours are counted within ``r_max`` (A; None: not counted). When every frame is an isolated atom,
    the force and energy statistics fall back to all frames (neighbour counts never do: isolated atoms
    have none).
    """
    molecular, _ = split_isolated(frames)
    n_edges = 0
    if r_max is not None:
        n_edges = sum(neighbor_list(c.positions, c.cell, c.pbc, r_max)[0].shape[0] for c in molecular)
    n_atoms = sum(c.n_atoms for c in molecular)
    used = molecular or list(frames)
    forces = [c.forces.reshape(-1) for c in used if c.forces is not None]
    rms = float(np.sqrt(np.mean(np.concatenate(forces) ** 2))) if forces else None
    per_atom = np.asarray([(c.energy - sum(e0s[int(z)] for z in c.numbers)) / c.n_atoms
                           for c in used if c.energy is not None], dtype=np.float64)
    mean = float(per_atom.mean()) if per_atom.size else None
    std = float(per_atom.std()) if per_atom.size else None
    counts = {p: sum(c.has(p) for c in frames) for p in PROPERTIES}
    return make_record(e0s, spec_name(e0s_spec), len(frames), n_atoms, n_edges, rms, mean, std, counts)


def to_json(record: HeadStatistics) -> dict[str, Any]:
    """The record as stored in an .h5 file's ``statistics`` attribute (element keys as strings)."""
    out: dict[str, Any] = dict(record)
    out["e0s"] = {str(z): v for z, v in record["e0s"].items()}
    return out


def from_json(data: Mapping[str, Any]) -> HeadStatistics:
    """A stored record (:func:`to_json`) back as a :class:`HeadStatistics`."""
    return make_record(
        {int(z): v for z, v in data.get("e0s", {}).items()}, data.get("e0s_spec"), data.get("n_frames", 0),
        data.get("n_atoms", 0), data.get("n_edges", 0), data.get("rms_forces"),
        data.get("mean_interaction_energy"), data.get("std_interaction_energy"), data.get("label_counts", {}),
    )


def scale_shift(record: HeadStatistics, mode: str) -> tuple[float, float]:
    """``(scale, shift)`` of a head: shift is the mean interaction energy per atom (eV/atom, 0 without
    energies); scale is the RMS force component (``rms_forces``, eV/A), the std of the interaction energy
    per atom (``std``, eV/atom) or 1 (``none``). A missing, non-finite or zero statistic gives scale 1."""
    mean = record["mean_interaction_energy"]
    shift = float(mean) if mean is not None else 0.0
    if mode == "none":
        return 1.0, shift
    value = record["std_interaction_energy"] if mode == "std" else record["rms_forces"]
    if value is None or not np.isfinite(value) or value < 1e-12:
        return 1.0, shift
    return float(value), shift


def mean_neighbours(records: Sequence[HeadStatistics]) -> float:
    """Directed edges per atom over all ``records`` (the convolution's normalisation); 1 when zero."""
    edges = sum(r["n_edges"] for r in records)
    atoms = sum(r["n_atoms"] for r in records)
    value = edges / atoms if atoms else 0.0
    return value if value > 0 else 1.0
