"""Radial part of the edge features (MACE, Batatia et al. 2022, Eqs. 7-8; MACE-MP-0 Eq. 3).

* :class:`BesselBasis`: ``B_n(x) = sqrt(2/r_c) sin(n pi x / r_c) / x``, n = 1..N.
* :class:`PolynomialEnvelope`: ``f(u) = 1 - (p+1)(p+2)/2 u^p + p(p+2) u^(p+1) - p(p+1)/2 u^(p+2)``,
  ``u = r / r_c``, zero for ``r >= r_c`` (Klicpera et al. 2020, DimeNet).
* :class:`AgnesiTransform`: ``y = 1 / (1 + a (r/r0)^q / (1 + (r/r0)^(q-p)))`` with ``r0`` the mean of
  the two covalent radii (ACEpotentials.jl, Witt et al. JCP 2023; constants of mace-torch 0.3.16).
* :class:`RadialEmbedding`: ``e = B(y(r)) * f(r)`` (``apply_cutoff=True``) or ``(B(y(r)), f(r))``
  with ``f`` applied after the radial MLP (``apply_cutoff=False``, MACE-MH-1).
* :func:`radial_mlp` (e3nn ``FullyConnectedNet``, SiLU, no biases) and :class:`LayerNormMLP`
  (Linear -> LayerNorm -> SiLU stacks with biases, the MH-1 non-linear block).

Lengths in Angstrom; edge tensors are ``[E, 1]`` in, ``[E, num_basis]`` out.
"""

from __future__ import annotations

import math

import ase.data
import torch
from e3nn import nn as e3nn_nn


class BesselBasis(torch.nn.Module):
    """``sqrt(2/r_max) sin(n pi x / r_max) / x`` for n = 1..num_basis. ``x [E,1] -> [E,num_basis]``."""

    def __init__(self, r_max: float, num_basis: int = 8):
        super().__init__()
        freqs = math.pi / r_max * torch.arange(1, num_basis + 1, dtype=torch.float64)
        self.register_buffer("frequencies", freqs)
        self.prefactor = math.sqrt(2.0 / r_max)
        self.r_max = r_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prefactor * torch.sin(self.frequencies * x) / x


def polynomial_envelope(x: torch.Tensor, r_max: torch.Tensor | float, p: int) -> torch.Tensor:
    """Smooth polynomial cutoff of order ``p``; 1 at 0, zero (with p-1 derivatives) at ``r_max``."""
    u = x / r_max
    env = (
        1.0
        - ((p + 1.0) * (p + 2.0) / 2.0) * u**p
        + p * (p + 2.0) * u ** (p + 1)
        - (p * (p + 1.0) / 2.0) * u ** (p + 2)
    )
    return env * (x < r_max)


class PolynomialEnvelope(torch.nn.Module):
    """Module form of :func:`polynomial_envelope` with a fixed ``r_max`` (Angstrom)."""

    def __init__(self, r_max: float, p: int = 5):
        super().__init__()
        self.r_max = float(r_max)
        self.p = int(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return polynomial_envelope(x, self.r_max, self.p)


def covalent_radii_table() -> torch.Tensor:
    """ASE covalent radii indexed by atomic number (Angstrom), float64 ``[119]``."""
    return torch.tensor(ase.data.covalent_radii, dtype=torch.float64)


def register_constants(module: torch.nn.Module, **values: float) -> None:
    """Register each value as a float64 buffer of shape ``[1]``, loadable from a 0-dim tensor as well.

    Shape ``[1]``, not ``[]``: torch.compile (torch 2.13) traces a 0-dim float buffer of a module passed
    to the compiled function as a symbolic Python float, then specialises it and traces the whole model a
    second time (about 13 s of compilation). Model files written before held these constants 0-dim.
    """
    for name, value in values.items():
        module.register_buffer(name, torch.tensor([value], dtype=torch.float64))

    def reshape_scalars(mod, state_dict, prefix, *args) -> None:
        for name in values:
            key = prefix + name
            if key in state_dict and state_dict[key].dim() == 0:
                state_dict[key] = state_dict[key].reshape(1)

    module.register_load_state_dict_pre_hook(reshape_scalars)


class AgnesiTransform(torch.nn.Module):
    """Agnesi distance transform ``y(r)`` in (0, 1) with ``r0 = (R_cov(Z_s) + R_cov(Z_r)) / 2``."""

    def __init__(self, a: float = 1.0805, q: float = 0.9183, p: float = 4.5791):
        super().__init__()
        register_constants(self, a=a, q=q, p=p)
        self.register_buffer("covalent_radii", covalent_radii_table())

    def forward(self, x: torch.Tensor, z_sender: torch.Tensor, z_receiver: torch.Tensor) -> torch.Tensor:
        """``x [E,1]`` lengths, ``z_* [E]`` atomic numbers -> ``[E,1]``."""
        r0 = 0.5 * (self.covalent_radii[z_sender] + self.covalent_radii[z_receiver]).unsqueeze(-1)
        s = x / r0
        return 1.0 / (1.0 + self.a * s**self.q / (1.0 + s ** (self.q - self.p)))


class RadialEmbedding(torch.nn.Module):
    """Bessel basis of the (optionally Agnesi-transformed) distance times the envelope.

    ``forward(lengths [E,1], z_sender [E], z_receiver [E]) -> (features [E,num_bessel], envelope [E,1])``.
    With ``apply_cutoff`` the features already carry the envelope.
    """

    def __init__(
        self,
        r_max: float,
        num_bessel: int,
        num_polynomial_cutoff: int,
        distance_transform: str | None = None,
        apply_cutoff: bool = True,
    ):
        super().__init__()
        self.bessel = BesselBasis(r_max, num_bessel)
        self.envelope = PolynomialEnvelope(r_max, num_polynomial_cutoff)
        self.transform = AgnesiTransform() if distance_transform == "agnesi" else None
        self.apply_cutoff = apply_cutoff
        self.out_dim = num_bessel

    def forward(
        self, lengths: torch.Tensor, z_sender: torch.Tensor, z_receiver: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        env = self.envelope(lengths)
        x = lengths if self.transform is None else self.transform(lengths, z_sender, z_receiver)
        feats = self.bessel(x)
        if self.apply_cutoff:
            feats = feats * env
        return feats, env


def radial_mlp(sizes: list[int]) -> e3nn_nn.FullyConnectedNet:
    """e3nn ``FullyConnectedNet`` (no biases, SiLU normalised to unit second moment, 1/sqrt(fan_in) weights)."""
    return e3nn_nn.FullyConnectedNet(sizes, torch.nn.functional.silu)


class LayerNormMLP(torch.nn.Module):
    """``Linear -> LayerNorm -> SiLU`` stack, last layer plain ``Linear`` (all with biases).

    ``sizes = [in, hidden.., out]``; submodules are named ``net.<i>`` (Sequential).
    """

    def __init__(self, sizes: list[int]):
        super().__init__()
        layers: list[torch.nn.Module] = []
        for i in range(1, len(sizes)):
            layers.append(torch.nn.Linear(sizes[i - 1], sizes[i], bias=True))
            if i < len(sizes) - 1:
                layers.append(torch.nn.LayerNorm(sizes[i]))
                layers.append(torch.nn.SiLU())
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
