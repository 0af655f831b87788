"""ZBL pair repulsion (Ziegler, Biersack, Littmark 1985; as used in MACE-MP-0, Eqs. 1-2).

Per directed edge ``s -> r`` at distance ``x`` (Angstrom)::

    e_sr = 1/2 * 14.3996 Z_s Z_r / x * phi(x / a) * f(x; r_c = R_cov(Z_s) + R_cov(Z_r))
    phi(t) = 0.1818 e^{-3.2 t} + 0.5099 e^{-0.9423 t} + 0.2802 e^{-0.4028 t} + 0.02817 e^{-0.2016 t}
    a = 0.4543 * 0.529 / (Z_s^0.3 + Z_r^0.3)

with ``f`` the polynomial envelope of order ``p`` (:func:`mlip.nn.radial.polynomial_envelope`).
The node energy (eV) is the sum over the edges received; both directions are present, hence the 1/2.
"""

from __future__ import annotations

import torch

from mlip.nn.radial import covalent_radii_table, polynomial_envelope, register_constants

_COULOMB = 14.3996  # e^2 / (4 pi eps0) in eV Angstrom
_PHI_C = (0.1818, 0.5099, 0.2802, 0.02817)
_PHI_D = (3.2, 0.9423, 0.4028, 0.2016)


class ZBL(torch.nn.Module):
    """``forward(lengths [E,1], z_s [E], z_r [E], receiver [E], num_nodes, edge_gate [E]|None) -> [N]`` eV."""

    def __init__(self, p: int = 5, a_prefactor: float = 0.4543, a_exp: float = 0.300):
        super().__init__()
        self.p = int(p)
        register_constants(self, a_prefactor=a_prefactor, a_exp=a_exp)
        self.register_buffer("covalent_radii", covalent_radii_table())

    def edge_energy(self, x: torch.Tensor, z_s: torch.Tensor, z_r: torch.Tensor) -> torch.Tensor:
        """Energy of each directed edge, ``[E]`` (eV), half the pair energy."""
        x = x.squeeze(-1)
        zs = z_s.to(x.dtype)
        zr = z_r.to(x.dtype)
        a = self.a_prefactor * 0.529 / (zs**self.a_exp + zr**self.a_exp)
        t = x / a
        phi = sum(c * torch.exp(-d * t) for c, d in zip(_PHI_C, _PHI_D))
        v = _COULOMB * zs * zr / x * phi
        r_c = self.covalent_radii[z_s] + self.covalent_radii[z_r]
        return 0.5 * v * polynomial_envelope(x, r_c, self.p)

    def forward(
        self,
        lengths: torch.Tensor,
        z_s: torch.Tensor,
        z_r: torch.Tensor,
        receiver: torch.Tensor,
        num_nodes: int,
        edge_gate: torch.Tensor | None = None,
    ) -> torch.Tensor:
        e = self.edge_energy(lengths, z_s, z_r)
        if edge_gate is not None:
            e = e * edge_gate
        # scatter_add, not a 1-D index_add: torch 2.13's multi-threaded inductor C++ fails on a
        # 1-D index_add into a size-1 output (a one-atom periodic cell), see docs/inference.md.
        out = torch.zeros(num_nodes, dtype=e.dtype, device=e.device)
        return out.scatter_add(0, receiver, e)
