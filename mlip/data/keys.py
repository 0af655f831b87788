"""Every key of a graph dict, a batch dict and a model output dict, with its shape: the one list.

``B`` graphs, ``N`` atoms, ``E`` directed edges, ``F`` descriptor features; in the uncertainty outputs
``P`` last-layer features, ``K`` projection directions, ``M`` committee members. Graph dicts
(:func:`mlip.data.graph.configuration_to_graph`) hold the batch keys without ``batch``/``ptr``, as
numpy, per-graph entries unbatched; :func:`mlip.data.batch.collate` makes the batch. The model
(:mod:`mlip.nn.model`) reads batch keys and writes output keys. This module is data's public
vocabulary: the only part of :mod:`mlip.data` that :mod:`mlip.nn` may import (pyproject's
import-linter contract). Units: A, eV, eV/A, eV/A^3.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------- batch: inputs
POSITIONS = "positions"
"""``[N,3]`` float, Cartesian positions (A)."""
NUMBERS = "numbers"
"""``[N]`` long, atomic numbers (the model maps them to its element index)."""
BATCH = "batch"
"""``[N]`` long, the graph of each atom (batch only)."""
PTR = "ptr"
"""``[B+1]`` long, first atom of each graph and the total (batch only)."""
EDGE_INDEX = "edge_index"
"""``[2,E]`` long, row 0 sender, row 1 receiver (batch offsets applied)."""
UNIT_SHIFTS = "unit_shifts"
"""``[E,3]`` float, integer-valued lattice translation of each edge."""
CELL = "cell"
"""``[B,3,3]`` float, lattice vectors as rows (zeros without a cell) (A)."""
PBC = "pbc"
"""``[B,3]`` bool, periodic directions."""
HEAD = "head"
"""``[B]`` long, index into the model's heads."""
EDGE_GATE = "edge_gate"
"""``[E]`` float, optional multiplier of every edge's contribution (E3D attribution)."""
NEIGHBOUR_SLOTS = "neighbour_slots"
"""``[N,D]`` long, optional: each atom's incoming edges (edges sorted by receiver), then a repeat of the last edge;
``D`` the largest in-degree (:func:`mlip.nn.convolution.neighbour_slots`; made for compiled inference)."""
SLOT_SENDERS = "slot_senders"
"""``[N,D]`` long, optional: the sender of each of :data:`NEIGHBOUR_SLOTS`, ``N`` for an empty slot."""
SPECIES = "species"
"""``[S]`` long, optional: the distinct atomic numbers of the batch, ascending
(:func:`mlip.nn.contraction.with_species`; made for compiled calls, where the symmetric contraction cannot find
them itself)."""
DISPLACEMENT = "displacement"
"""``[B,3,3]`` float, optional zero strain handle that requires grad, made by the caller (compiled training:
a leaf tensor cannot be created inside a compiled graph); the model makes its own when absent."""

# ---------------------------------------------------------------------------------- batch: labels
ENERGY = "energy"
"""``[B]`` float, total energy (eV); also a model output."""
FORCES = "forces"
"""``[N,3]`` float, forces (eV/A); also a model output."""
STRESS = "stress"
"""``[B,3,3]`` float, stress, ASE sign (eV/A^3); also a model output."""
VIRIALS = "virials"
"""``[B,3,3]`` float, virials ``-dE/d(strain)`` (eV); also a model output."""
WEIGHT = "weight"
"""``[B]`` float, the frame's weight."""
ENERGY_WEIGHT, FORCES_WEIGHT, STRESS_WEIGHT, VIRIALS_WEIGHT = (
    "energy_weight", "forces_weight", "stress_weight", "virials_weight")
"""``[B]`` float each, per-property weights."""
HAS_ENERGY, HAS_FORCES, HAS_STRESS, HAS_VIRIALS = "has_energy", "has_forces", "has_stress", "has_virials"
"""``[B]`` bool each: the frame carries that label (missing labels are zero-filled and masked)."""

# ---------------------------------------------------------------------------------- model outputs
NODE_ENERGY = "node_energy"
"""``[N]`` float, per-atom energy including E0 (eV)."""
INTERACTION_ENERGY = "interaction_energy"
"""``[B]`` float, energy minus the E0s (eV)."""
NODE_FEATS = "node_feats"
"""``[N,F]`` float, concatenated invariant node features (descriptors)."""
EDGE_ENERGY = "edge_energy"
"""``[E]`` float, energy of each directed edge (edge-energy readout only) (eV)."""

# ------------------------------------------- model outputs: uncertainty (mlip.uncertainty evaluators)
FEATURES = "features"
"""``[B,P]`` float, last-layer features per graph: the readout inputs summed over its atoms, times the head's
scale (:func:`mlip.uncertainty.predict.evaluate_with_features`)."""
PROJ = "proj"
"""``[B,K]`` float, projections whose inner products are the energy covariance between graphs (LLPR ``f^T L``,
committee the centred member energies) (eV); from ``evaluate_with_features`` ``f^T M`` on given directions."""
PROJ_FORCES = "proj_forces"
"""``[K,N,3]`` float, ``-d proj / d positions`` (eV/A) (``evaluate_with_features`` with directions and forces)."""
PROJ_STRESS = "proj_stress"
"""``[K,B,3,3]`` float, ``(1/V) d proj / d strain`` (eV/A^3; zero without a periodic cell)."""
PERIODIC = "periodic"
"""``[B]`` bool, the graph has a periodic, non-degenerate cell (``evaluate_with_features`` with stress)."""
MEMBERS_ENERGY = "members_energy"
"""``[M,B]`` float, each committee member's energy (eV)."""
ENERGY_UNCERTAINTY = "energy_uncertainty"
"""``[B]`` float, predicted standard deviation of the energy (eV)."""
FORCES_VARIANCE = "forces_variance"
"""``[N,3]`` float, predicted variance of each force component (eV^2/A^2)."""
FORCES_UNCERTAINTY = "forces_uncertainty"
"""``[N]`` float, per-atom force uncertainty ``sqrt(sum of the 3 component variances)`` (eV/A)."""
STRESS_UNCERTAINTY = "stress_uncertainty"
"""``[B,3,3]`` float, predicted standard deviation of each stress component (eV/A^3)."""

PROPERTIES: tuple[str, ...] = (ENERGY, FORCES, STRESS, VIRIALS)
"""The labelled properties, in loss order."""
HAS_LABEL: dict[str, str] = {ENERGY: HAS_ENERGY, FORCES: HAS_FORCES, STRESS: HAS_STRESS, VIRIALS: HAS_VIRIALS}
"""Each property's has-label mask key."""
PROPERTY_WEIGHT: dict[str, str] = {
    ENERGY: ENERGY_WEIGHT, FORCES: FORCES_WEIGHT, STRESS: STRESS_WEIGHT, VIRIALS: VIRIALS_WEIGHT}
"""Each property's weight key."""

SHAPES: dict[str, str] = {
    POSITIONS: "[N,3]", NUMBERS: "[N]", BATCH: "[N]", PTR: "[B+1]", EDGE_INDEX: "[2,E]", UNIT_SHIFTS: "[E,3]",
    CELL: "[B,3,3]", PBC: "[B,3]", HEAD: "[B]", EDGE_GATE: "[E]", DISPLACEMENT: "[B,3,3]",
    NEIGHBOUR_SLOTS: "[N,D]", SLOT_SENDERS: "[N,D]", SPECIES: "[S]",
    ENERGY: "[B]", FORCES: "[N,3]", STRESS: "[B,3,3]", VIRIALS: "[B,3,3]", WEIGHT: "[B]",
    ENERGY_WEIGHT: "[B]", FORCES_WEIGHT: "[B]", STRESS_WEIGHT: "[B]", VIRIALS_WEIGHT: "[B]",
    HAS_ENERGY: "[B]", HAS_FORCES: "[B]", HAS_STRESS: "[B]", HAS_VIRIALS: "[B]",
    NODE_ENERGY: "[N]", INTERACTION_ENERGY: "[B]", NODE_FEATS: "[N,F]", EDGE_ENERGY: "[E]",
    FEATURES: "[B,P]", PROJ: "[B,K]", PROJ_FORCES: "[K,N,3]", PROJ_STRESS: "[K,B,3,3]", PERIODIC: "[B]",
    MEMBERS_ENERGY: "[M,B]", ENERGY_UNCERTAINTY: "[B]", FORCES_VARIANCE: "[N,3]", FORCES_UNCERTAINTY: "[N]",
    STRESS_UNCERTAINTY: "[B,3,3]",
}
"""Shape of every key (B graphs, N atoms, E edges, F descriptor features, P last-layer features, K projections,
M committee members)."""

PER_ATOM: tuple[str, ...] = (POSITIONS, NUMBERS, FORCES)
"""Per-atom entries of a graph dict (concatenated by collate)."""
PER_EDGE: tuple[str, ...] = (EDGE_INDEX, UNIT_SHIFTS)
"""Per-edge entries of a graph dict (edge_index concatenated along axis 1 with atom offsets)."""
PER_GRAPH: tuple[str, ...] = (
    CELL, PBC, HEAD, ENERGY, WEIGHT, ENERGY_WEIGHT, FORCES_WEIGHT, STRESS_WEIGHT, VIRIALS_WEIGHT,
    STRESS, VIRIALS, HAS_ENERGY, HAS_FORCES, HAS_STRESS, HAS_VIRIALS,
)
"""Per-graph entries of a graph dict (stacked by collate)."""
LONG_KEYS: frozenset[str] = frozenset({
    NUMBERS, EDGE_INDEX, HEAD, BATCH, PTR, NEIGHBOUR_SLOTS, SLOT_SENDERS, SPECIES})
"""Batch entries of dtype long; the others are bool (:data:`BOOL_KEYS`) or float."""
BOOL_KEYS: frozenset[str] = frozenset({PBC, HAS_ENERGY, HAS_FORCES, HAS_STRESS, HAS_VIRIALS})
"""Batch entries of dtype bool."""

ATOM_DIM_KEYS: tuple[str, ...] = (POSITIONS, NUMBERS, BATCH, NEIGHBOUR_SLOTS, SLOT_SENDERS)
"""Model inputs whose dimension 0 is the atom count (marked dynamic for torch.compile)."""
EDGE_DIMS: tuple[tuple[str, int], ...] = (
    (EDGE_INDEX, 1), (UNIT_SHIFTS, 0), (NEIGHBOUR_SLOTS, 1), (SLOT_SENDERS, 1), (SPECIES, 0))
"""Model inputs with an edge-count dimension, or another that varies with the structure (the slot width, the
number of species), and which dimension (marked dynamic for torch.compile)."""
