"""Configuration -> graph dict (numpy, float64): the per-graph entries of the batch table in
docs/architecture.md. Missing labels are zero-filled and flagged by ``has_*`` masks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlip.data import keys
from mlip.data.configuration import PROPERTIES, Configuration
from mlip.data.neighbors import neighbor_list
from mlip.errors import DataError

NODE_KEYS: tuple[str, ...] = keys.PER_ATOM
"""Per-atom entries (concatenated by collate)."""
EDGE_KEYS: tuple[str, ...] = keys.PER_EDGE
"""Per-edge entries (edge_index is concatenated along axis 1 with node offsets)."""
GRAPH_KEYS: tuple[str, ...] = keys.PER_GRAPH
"""Per-graph entries (stacked by collate)."""


def configuration_to_graph(config: Configuration, r_max: float, heads: Sequence[str]) -> dict[str, np.ndarray]:
    """Build the graph of ``config`` with cutoff ``r_max`` (Angstrom).

    Returns a dict of numpy arrays (n atoms, e edges):
    positions [n,3] float64 (A), numbers [n] int64, forces [n,3] float64 (eV/A, zeros if missing),
    edge_index [2,e] int64 (row 0 sender, row 1 receiver), unit_shifts [e,3] float64 (integer values),
    cell [3,3] float64 (A), pbc [3] bool, head () int64 (index into ``heads``),
    energy () float64 (eV), stress/virials [3,3] float64 (eV/A^3, eV), weight and
    energy/forces/stress/virials_weight () float64 (a property's weight is 0 where its label is
    missing), has_energy/has_forces/has_stress/has_virials () bool.

    Raises:
        DataError: the configuration's head is not in ``heads``.
    """
    heads = list(heads)
    if config.head not in heads:
        raise DataError(f"{config.source or 'configuration'}: key 'head': unknown head {config.head!r}; known heads: {heads}")
    sender, receiver, shifts, _ = neighbor_list(config.positions, config.cell, config.pbc, r_max)
    n = config.n_atoms
    graph: dict[str, np.ndarray] = {
        keys.POSITIONS: config.positions.astype(np.float64, copy=True),
        keys.NUMBERS: config.numbers.astype(np.int64, copy=True),
        keys.EDGE_INDEX: np.stack([sender, receiver]).astype(np.int64).reshape(2, -1),
        keys.UNIT_SHIFTS: shifts.astype(np.float64).reshape(-1, 3),
        keys.CELL: config.cell.astype(np.float64, copy=True),
        keys.PBC: config.pbc.astype(bool, copy=True),
        keys.HEAD: np.asarray(heads.index(config.head), dtype=np.int64),
        keys.WEIGHT: np.asarray(config.weight, dtype=np.float64),
    }
    zeros = {keys.ENERGY: np.zeros(()), keys.FORCES: np.zeros((n, 3)), keys.STRESS: np.zeros((3, 3)),
             keys.VIRIALS: np.zeros((3, 3))}
    for prop in PROPERTIES:
        value = getattr(config, prop)
        present = value is not None
        graph[prop] = np.asarray(value, dtype=np.float64).reshape(zeros[prop].shape) if present else zeros[prop]
        graph[keys.HAS_LABEL[prop]] = np.asarray(present, dtype=bool)
        weight = config.property_weights.get(prop, 1.0) if present else 0.0
        graph[keys.PROPERTY_WEIGHT[prop]] = np.asarray(weight, dtype=np.float64)
    return graph


def graph_sizes(graph: dict[str, np.ndarray]) -> tuple[int, int]:
    """(number of atoms, number of edges) of a graph dict."""
    return int(graph[keys.NUMBERS].shape[0]), int(graph[keys.EDGE_INDEX].shape[1])
