"""One atomic structure with its reference labels (the unit the data pipeline reads and graphs).

Units: positions and cell in Angstrom, energy in eV, forces in eV/A, stress in eV/A^3 (ASE sign,
``stress = (1/V) dE/d(strain)``), virials in eV (``virials = -dE/d(strain)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PROPERTIES: tuple[str, ...] = ("energy", "forces", "stress", "virials")
"""Label names a configuration can carry (and a loss can weight)."""


def _default_property_weights() -> dict[str, float]:
    return {name: 1.0 for name in PROPERTIES}


@dataclass
class Configuration:
    """A structure and its labels; missing labels are ``None`` (they then contribute no loss).

    Attributes:
        numbers: atomic numbers, shape [N], int64.
        positions: Cartesian positions, shape [N, 3], float64, Angstrom.
        cell: lattice vectors as rows, shape [3, 3], float64, Angstrom (zeros if none).
        pbc: periodicity along each cell vector, shape [3], bool.
        energy: total energy (eV) or None.
        forces: shape [N, 3] (eV/A) or None.
        stress: shape [3, 3] (eV/A^3, ASE sign) or None.
        virials: shape [3, 3] (eV) or None.
        weight: weight of the whole frame in the loss.
        property_weights: per-property weights (keys energy/forces/stress/virials, default 1).
        config_type: the sampling group (e.g. "IsolatedAtom", "300K_MD").
        head: name of the output head the frame's labels belong to.
        source: where it came from, "file.xyz:12".
    """

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    pbc: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=bool))
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    virials: np.ndarray | None = None
    weight: float = 1.0
    property_weights: dict[str, float] = field(default_factory=_default_property_weights)
    config_type: str = "Default"
    head: str = "Default"
    source: str = ""

    def __post_init__(self) -> None:
        self.numbers = np.asarray(self.numbers, dtype=np.int64).reshape(-1)
        self.positions = np.asarray(self.positions, dtype=np.float64).reshape(-1, 3)
        self.cell = np.asarray(self.cell, dtype=np.float64).reshape(3, 3)
        self.pbc = np.broadcast_to(np.asarray(self.pbc, dtype=bool), (3,)).copy()
        if self.energy is not None:
            self.energy = float(self.energy)
        if self.forces is not None:
            self.forces = np.asarray(self.forces, dtype=np.float64)
        if self.stress is not None:
            self.stress = np.asarray(self.stress, dtype=np.float64)
        if self.virials is not None:
            self.virials = np.asarray(self.virials, dtype=np.float64)
        weights = _default_property_weights()
        weights.update({k: float(v) for k, v in self.property_weights.items()})
        self.property_weights = weights
        self.weight = float(self.weight)

    @property
    def n_atoms(self) -> int:
        """Number of atoms N."""
        return int(self.numbers.shape[0])

    def has(self, prop: str) -> bool:
        """Whether the label ``prop`` (energy/forces/stress/virials) is present."""
        return getattr(self, prop) is not None
