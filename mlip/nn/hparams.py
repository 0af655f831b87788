"""Hyper-parameters of the MACE-style model, as one typed, JSON-serialisable dataclass.

The training config's ``model:`` section maps one-to-one onto these fields (plus the data-derived
fields ``atomic_numbers``, ``avg_num_neighbors``, ``atomic_energies``, ``heads``, ``scale``, ``shift``
that the trainer fills from training-set statistics). Model files store ``asdict(hparams)`` as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class ModelHyperparameters:
    """Every architecture option of the model.

    Units: lengths in Angstrom, energies in eV.
    """

    atomic_numbers: list[int] = field(default_factory=list)
    """Elements the model knows, sorted ascending (the one-hot order)."""
    heads: list[str] = field(default_factory=lambda: ["Default"])
    """Output heads; one readout channel, E0 set and scale/shift per head."""
    atomic_energies: list[list[float]] = field(default_factory=list)
    """E0 per head and element: ``atomic_energies[head][element_index]`` (eV)."""
    scale: list[float] = field(default_factory=lambda: [1.0])
    """Per-head scale of the interaction energy."""
    shift: list[float] = field(default_factory=lambda: [0.0])
    """Per-head shift of the interaction energy per atom (eV)."""
    avg_num_neighbors: float = 1.0
    """Mean neighbour count, the constant normalisation of the convolution."""

    r_max: float = 5.0
    num_bessel: int = 8
    num_polynomial_cutoff: int = 5
    max_ell: int = 3
    hidden_irreps: str = "32x0e + 32x1o"
    num_interactions: int = 2
    correlation: int | list[int] = 3
    radial_mlp: list[int] = field(default_factory=lambda: [64, 64, 64])
    mlp_irreps: str = "16x0e"
    gate: str = "silu"
    interaction: str = "residual"
    """Interaction block: ``residual`` | ``density_residual`` | ``nonlinear``."""
    interaction_first: str = "residual"
    """First interaction block: ``residual`` | ``plain`` (no residual) | ``density`` | ``density_residual`` | ``nonlinear``."""
    edge_irreps: str | None = None
    """Irreps of the channel-mixed node features fed to the convolution (non-linear block only)."""
    use_agnostic_product: bool = False
    """Element-agnostic symmetric-contraction weights (MH-1) instead of element-dependent ones."""
    apply_cutoff: bool = True
    """True: envelope multiplies the radial basis; False: envelope multiplies the radial-MLP output."""
    pair_repulsion: bool = False
    """Add ZBL pair repulsion."""
    distance_transform: str | None = None
    """``None`` or ``"agnesi"``."""
    backend: str = "e3nn"
    """Numeric backend: ``e3nn`` or ``cueq``."""
    edge_energy_readout: bool = False
    """E3D option: interaction energy as a sum of edge energies (see docs/e3d.md)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelHyperparameters":
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError`` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TypeError(f"unknown model hyper-parameters: {', '.join(unknown)}")
        return cls(**data)
