"""Energy readouts (one output per head) and the product block.

* :class:`LinearReadout`: ``E_i = W h_i`` (o3.Linear to ``H x 0e``), inner layers.
* :class:`MLPReadout`: ``E_i = W_2 mask_head(act(W_1 h_i))`` for the last layer; the hidden layer holds
  ``H`` blocks of ``mlp_irreps`` (one per head, head-major) and only the block of the atom's head is kept.
  ``act`` is e3nn's normalised activation (``nn.Activation``).
* :class:`ProductBlock`: symmetric contraction, ``o3.Linear`` and the self-connection ``+ sc``.

Readouts return ``[N]``: each atom's output for its own head.
"""

from __future__ import annotations

import torch
from e3nn import nn as e3nn_nn
from e3nn import o3

from mlip.nn.contraction import SymmetricContraction
from mlip.nn.layers import make_linear

GATES = {"silu": torch.nn.functional.silu, "tanh": torch.tanh, "none": None}


def _select_head(out: torch.Tensor, node_head: torch.Tensor) -> torch.Tensor:
    return out.gather(1, node_head.unsqueeze(-1)).squeeze(-1)


class LinearReadout(torch.nn.Module):
    """``forward(x [N, irreps_in.dim], node_head [N]) -> [N]``."""

    def __init__(self, irreps_in: o3.Irreps | str, num_heads: int):
        super().__init__()
        self.linear = make_linear(irreps_in, f"{num_heads}x0e")

    def forward(self, x: torch.Tensor, node_head: torch.Tensor) -> torch.Tensor:
        return _select_head(self.linear(x), node_head)


class MLPReadout(torch.nn.Module):
    """``forward(x [N, irreps_in.dim], node_head [N]) -> [N]``; one hidden block per head."""

    def __init__(self, irreps_in: o3.Irreps | str, mlp_irreps: o3.Irreps | str, gate: str, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        hidden = (num_heads * o3.Irreps(mlp_irreps)).simplify()
        self.hidden_dim = hidden.dim
        self.linear_1 = make_linear(irreps_in, hidden)
        self.activation = e3nn_nn.Activation(hidden, [GATES[gate]])
        self.linear_2 = make_linear(hidden, f"{num_heads}x0e")

    def forward(self, x: torch.Tensor, node_head: torch.Tensor) -> torch.Tensor:
        h = self.activation(self.linear_1(x))
        if self.num_heads > 1:
            block = self.hidden_dim // self.num_heads
            owner = torch.arange(self.hidden_dim, device=x.device) // block  # head of each hidden unit
            h = h * (owner.unsqueeze(0) == node_head.unsqueeze(1)).to(h.dtype)
        return _select_head(self.linear_2(h), node_head)


class ProductBlock(torch.nn.Module):
    """``h_new = W m + sc`` with ``m`` the symmetric contraction of ``A``.

    ``forward(A [N, irreps_in.dim], sc [N, irreps_out.dim] | None, element [N], present [S] | None)
    -> [N, irreps_out.dim]``. ``element`` indexes the weight set (zeros for element-agnostic weights);
    ``present``, the element indices that occur (a superset of ``element``'s values), as in
    :meth:`mlip.nn.contraction.SymmetricContraction.forward`.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_out: o3.Irreps,
        correlation: int,
        num_elements: int,
        agnostic: bool,
    ):
        super().__init__()
        self.agnostic = agnostic
        self.contraction = SymmetricContraction(irreps_in, irreps_out, correlation, 1 if agnostic else num_elements)
        self.linear = make_linear(irreps_out, irreps_out)

    def forward(
        self, a: torch.Tensor, sc: torch.Tensor | None, element: torch.Tensor, present: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.agnostic:
            element, present = torch.zeros_like(element), None
        out = self.linear(self.contraction(a, element, present))
        if sc is not None:
            out = out + sc
        return out
