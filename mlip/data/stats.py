"""Statistics of a training set, per head: E0s, mean neighbour count, force RMS, interaction energy.

Units: E0s in eV per atom of the element; ``avg_num_neighbors`` in neighbours per atom (directed edges
within r_max divided by atoms); ``rms_forces`` in eV/A (root mean square over all force components);
``mean``/``std`` of the interaction energy per atom, ``(E - sum_i E0[Z_i]) / N``, in eV/atom (population
standard deviation). Isolated-atom frames define E0s but are left out of the other statistics.

The per-head record :class:`HeadStatistics` has one shape for in-memory frames and on-disk (.h5)
datasets. It is computed once per training run: from frames in memory by :func:`head_statistics`
(several heads: :func:`compute_statistics`), or streamed over an .h5 file by
:func:`mlip.data.ondisk_write.compute_ondisk_statistics` and stored in the file (JSON, element keys as
strings: :func:`to_json` / :func:`from_json`). :func:`scale_shift` and :func:`mean_neighbours` turn
records into the numbers the model uses.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict, Union

import numpy as np

from mlip.data.configuration import PROPERTIES, Configuration
from mlip.data.elements import isolated_energies, parse_element_energies, symbol
from mlip.data.io import is_isolated_atom, split_isolated
from mlip.data.neighbors import neighbor_list
from mlip.errors import DataError

E0Spec = Union[str, Mapping[Any, float]]
"""``"isolated"``, ``"fit"``, or a mapping element (Z or symbol) -> E0 in eV."""


_symbol = symbol


def e0s_from_mapping(mapping: Mapping[Any, float], atomic_numbers: Sequence[int], head: str = "Default") -> dict[int, float]:
    """E0s (eV) from an explicit mapping with keys Z or element symbols; every element must be given."""
    e0s = parse_element_energies(mapping, "e0s")
    missing = [z for z in atomic_numbers if z not in e0s]
    if missing:
        names = ", ".join(_symbol(z) for z in missing)
        raise DataError(f"E0s of head '{head}': key 'e0s': no value given for {names}")
    return {int(z): e0s[int(z)] for z in atomic_numbers}


def e0s_from_isolated_atoms(configs: Sequence[Configuration], atomic_numbers: Sequence[int], head: str = "Default") -> dict[int, float]:
    """E0s (eV) from isolated-atom frames (mean if an element has several); every element needs one."""
    frames = [c for c in configs if is_isolated_atom(c) and c.n_atoms == 1 and c.energy is not None]
    found = isolated_energies(frames, "isolated atoms") if frames else {}  # the one element -> energy reader
    missing = [z for z in atomic_numbers if z not in found]
    if missing:
        names = ", ".join(_symbol(z) for z in missing)
        raise DataError(
            f"E0s of head '{head}': key 'e0s': no isolated-atom frame (config_type IsolatedAtom) for {names}; "
            "use e0s 'fit' or give a mapping"
        )
    return {int(z): float(found[int(z)]) for z in atomic_numbers}


def underdetermined_e0s(rank: int, e0s: Mapping[int, float]) -> str:
    """The core of the one-line warning when the frames' compositions determine only ``rank`` of the E0s
    ``e0s`` ({Z: eV}, the fitted values): shared by ``e0s: fit``/``average`` and fine-tuning's re-estimation."""
    pretty = ", ".join(f"{_symbol(z)}: {v:.1f}" for z, v in e0s.items())
    return (f"the training compositions determine only {rank} of {len(e0s)} E0s (all frames share "
            f"{'one composition' if rank == 1 else 'few compositions'}), so the fitted E0s {{{pretty}}} eV are "
            "not physical (only their sum per composition is)")


def e0s_by_least_squares(
    configs: Sequence[Configuration], atomic_numbers: Sequence[int], head: str = "Default",
    warn: Callable[[str], None] | None = None, spec: str = "fit", where: str = "e0s",
) -> dict[int, float]:
    """E0s (eV) minimising ||E - N c||^2 over frames with an energy (N: element counts, frames x elements).

    This is ``e0s: fit`` and mace-torch's ``average`` E0s. Raises DataError when an element occurs in no
    frame with an energy. When the compositions do not determine every E0 (e.g. all frames share one
    stoichiometry) the minimum-norm solution is used and ``warn`` (default: a Python warning) gets one
    line saying so and what to do: the sum of E0s over a composition is still right, each E0 is not.
    """
    zs = [int(z) for z in atomic_numbers]
    frames = [c for c in configs if c.energy is not None]
    if not frames:
        raise DataError(f"E0s of head '{head}': key 'e0s': cannot fit E0s, no frame carries an energy")
    column = {z: k for k, z in enumerate(zs)}
    counts = np.zeros((len(frames), len(zs)))
    for row, c in enumerate(frames):
        for z, n in zip(*np.unique(c.numbers, return_counts=True)):
            if int(z) not in column:
                raise DataError(f"{c.source}: key 'species': element {_symbol(int(z))} is not in the model's elements")
            counts[row, column[int(z)]] += n
    energies = np.array([c.energy for c in frames])
    absent = [zs[k] for k in range(len(zs)) if not counts[:, k].any()]
    if absent:
        names = ", ".join(_symbol(z) for z in absent)
        raise DataError(
            f"E0s of head '{head}': key 'e0s': cannot fit E0 for {names}: no frame with an energy contains it; "
            "give E0s explicitly or add such frames"
        )
    solution, _, rank, _ = np.linalg.lstsq(counts, energies, rcond=None)
    result = {z: float(solution[column[z]]) for z in zs}
    if rank < len(zs):
        msg = (f"{where}: {spec!r} on head '{head}': {underdetermined_e0s(rank, result)}; "
               "give isolated-atom energies (e0s: isolated with isolated_atoms: FILE, or e0s: FILE.xyz)")
        if warn is None:
            warnings.warn(msg, stacklevel=2)
        else:
            warn(msg)
    return result


def compute_e0s(spec: E0Spec, configs: Sequence[Configuration], atomic_numbers: Sequence[int], head: str = "Default") -> dict[int, float]:
    """E0s (eV) from ``spec``: "isolated", "fit"/"average" (least squares) or a mapping."""
    if isinstance(spec, str):
        if spec == "isolated":
            return e0s_from_isolated_atoms(configs, atomic_numbers, head)
        if spec in ("fit", "average", "least_squares"):
            return e0s_by_least_squares(split_isolated(configs)[0] or list(configs), atomic_numbers, head)
        raise DataError(f"E0s of head '{head}': key 'e0s': unknown value {spec!r}; use 'isolated', 'fit', 'average' or a mapping")
    if isinstance(spec, Mapping):
        return e0s_from_mapping(spec, atomic_numbers, head)
    raise DataError(f"E0s of head '{head}': key 'e0s': expected 'isolated', 'fit' or a mapping, got {type(spec).__name__}")


def interaction_energies_per_atom(configs: Sequence[Configuration], e0s: Mapping[int, float]) -> np.ndarray:
    """``(E - sum_i E0[Z_i]) / N`` (eV/atom) of every frame with an energy."""
    values = []
    for c in configs:
        if c.energy is None:
            continue
        e_ref = sum(e0s[int(z)] for z in c.numbers)
        values.append((c.energy - e_ref) / c.n_atoms)
    return np.asarray(values, dtype=np.float64)


def mean_neighbor_count(configs: Sequence[Configuration], r_max: float) -> float:
    """Mean number of neighbours within ``r_max`` (A) per atom: directed edges / atoms."""
    edges, atoms = neighbor_counts(configs, r_max)
    return float(edges / atoms) if atoms else 0.0


def rms_forces(configs: Sequence[Configuration]) -> float | None:
    """Root mean square of all force components (eV/A) over frames with forces; None if none."""
    forces = [c.forces for c in configs if c.forces is not None]
    if not forces:
        return None
    stacked = np.concatenate([f.reshape(-1) for f in forces])
    return float(np.sqrt(np.mean(stacked**2)))


# ================================================================================= the per-head record
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


def neighbor_counts(configs: Sequence[Configuration], r_max: float) -> tuple[int, int]:
    """``(directed edges within r_max, atoms)`` over ``configs`` (r_max in A)."""
    edges = atoms = 0
    for c in configs:
        sender, _, _, _ = neighbor_list(c.positions, c.cell, c.pbc, r_max)
        edges += sender.shape[0]
        atoms += c.n_atoms
    return edges, atoms


def head_statistics(
    frames: Sequence[Configuration], e0s: Mapping[int, float], r_max: float | None, e0s_spec: Any = None,
) -> HeadStatistics:
    """The record of in-memory ``frames`` (one head) for the given E0s (eV; empty: no energy statistics).

    Neighbours are counted within ``r_max`` (A; None: not counted). When every frame is an isolated atom,
    the force and energy statistics fall back to all frames (neighbour counts never do: isolated atoms
    have none).
    """
    molecular, _ = split_isolated(frames)
    n_edges, n_atoms = neighbor_counts(molecular, r_max) if r_max is not None else (0, 0)
    used = molecular or list(frames)
    per_atom = interaction_energies_per_atom(used, e0s) if e0s else np.zeros(0)
    mean = float(per_atom.mean()) if per_atom.size else None
    std = float(per_atom.std()) if per_atom.size else None
    counts = {p: sum(c.has(p) for c in frames) for p in PROPERTIES}
    return make_record(e0s, spec_name(e0s_spec), len(frames), n_atoms, n_edges, rms_forces(used), mean, std, counts)


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


def scale_shift(record: HeadStatistics, mode: str, shifting: str = "mean") -> tuple[float, float]:
    """``(scale, shift)`` of a head: shift is the mean interaction energy per atom (``shifting="mean"``,
    eV/atom, 0 without energies) or 0 (``"none"``, mace-torch's ``--model MACE``); scale is the RMS force
    component (``rms_forces``, eV/A), the std of the interaction energy per atom (``std``, eV/atom) or 1
    (``none``). A missing, non-finite or zero statistic gives scale 1."""
    mean = record["mean_interaction_energy"]
    shift = float(mean) if mean is not None and shifting == "mean" else 0.0
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


def _per_head_spec(spec: Any, heads: Sequence[str]) -> dict[str, Any]:
    if isinstance(spec, Mapping) and spec and all(
        isinstance(k, str) and k in heads and isinstance(v, (str, Mapping)) for k, v in spec.items()
    ):
        return {h: spec.get(h, "isolated") for h in heads}
    return {h: spec for h in heads}


def compute_statistics(
    configs: Sequence[Configuration], r_max: float, atomic_numbers: Sequence[int],
    e0s_spec: Any = "isolated", heads: Sequence[str] = ("Default",),
) -> dict[str, dict[str, Any]]:
    """Training-set statistics for every head.

    Args:
        configs: training configurations (all heads; isolated-atom frames included).
        r_max: cutoff (A) of the neighbour count.
        atomic_numbers: the model's elements (every one needs an E0 in every head).
        e0s_spec: "isolated", "fit", a mapping element -> E0 (eV), or a mapping head -> one of those.
        heads: head names; frames are grouped by ``config.head``.

    Returns:
        ``{head: HeadStatistics}`` (:class:`HeadStatistics`: ``e0s`` {Z: eV}, ``avg_num_neighbors``,
        ``rms_forces`` eV/A or None, ``mean/std_interaction_energy`` eV/atom or None, ``n_frames``, ...).
        Heads without any frame get the statistics of all frames (except E0s, which need their own data
        or a mapping).
    """
    zs = sorted(int(z) for z in atomic_numbers)
    specs = _per_head_spec(e0s_spec, heads)
    known = set(heads)
    allowed = set(zs)
    for c in configs:
        if c.head not in known:
            raise DataError(f"{c.source}: key 'head': unknown head {c.head!r}; known heads: {list(heads)}")
        extra = sorted({int(z) for z in c.numbers} - allowed)
        if extra:
            names = ", ".join(_symbol(z) for z in extra)
            raise DataError(f"{c.source}: key 'species': element {names} is not in the model's elements "
                            f"{', '.join(_symbol(z) for z in zs)}")
    result: dict[str, dict[str, Any]] = {}
    for head in heads:
        head_configs = [c for c in configs if c.head == head]
        e0s = compute_e0s(specs[head], head_configs, zs, head)
        own = bool(split_isolated(head_configs)[0])  # a head without molecular frames: all heads' frames
        record = head_statistics(head_configs if own else split_isolated(configs)[0], e0s, r_max, specs[head])
        record["n_frames"] = len(head_configs)
        record["label_counts"] = {p: sum(c.has(p) for c in head_configs) for p in PROPERTIES}
        result[head] = record
    return result
