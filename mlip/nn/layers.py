"""Small equivariant linear layers shared by the blocks (swappable by a backend).

* :func:`make_linear`: e3nn ``o3.Linear`` (per-irrep channel mixing, weights ``1/sqrt(fan_in)``, no bias).
* :class:`ElementLinear`: element-dependent channel mixing ``y_{k'} = sum_k W_{z, k, k'} x_k / sqrt(C E)``,
  implemented as e3nn's ``FullyConnectedTensorProduct(x, one_hot(z))`` (MACE's "skip_tp"/self-connection).
"""

from __future__ import annotations

import torch
from e3nn import o3


def make_linear(irreps_in: o3.Irreps | str, irreps_out: o3.Irreps | str) -> o3.Linear:
    """Equivariant linear map (e3nn ``o3.Linear``, internal shared weights)."""
    return o3.Linear(o3.Irreps(irreps_in), o3.Irreps(irreps_out), internal_weights=True, shared_weights=True)


class ElementLinear(torch.nn.Module):
    """Element-dependent equivariant linear map.

    ``forward(x [N, irreps_in.dim], one_hot [N, num_elements]) -> [N, irreps_out.dim]``.
    """

    def __init__(self, irreps_in: o3.Irreps | str, num_elements: int, irreps_out: o3.Irreps | str):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        self.tp = o3.FullyConnectedTensorProduct(self.irreps_in, o3.Irreps(f"{num_elements}x0e"), self.irreps_out)

    def forward(self, x: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
        return self.tp(x, one_hot)
