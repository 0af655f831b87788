"""Interaction blocks: the one-particle basis ``A`` of MACE (Batatia et al. 2022, Eq. 9) and variants.

All blocks: ``h~ = W_up h`` (o3.Linear), radial weights ``R = MLP(e_sr)``, channel-wise convolution
``sum_s R * CG(h~_s, Y_sr)``, then ``A = W (sum) / norm``. Variants (``kind``):

* ``residual``: ``norm = avg_num_neighbors``; returns the self-connection ``sc = W_z h`` for the product.
* ``plain``: ``norm = avg_num_neighbors``; ``A = W_z (W sum / norm)``, no self-connection.
* ``density``: ``norm_r = 1 + sum_s tanh((W_d e_sr)^2)`` (MACE-MP-0b3); ``A = W_z(..)``, no self-connection.
* ``density_residual``: density normalisation and a self-connection.

:class:`NonLinearInteraction` is the MACE-MH-1 block (see its docstring).
"""

from __future__ import annotations

import torch
from e3nn import nn as e3nn_nn
from e3nn import o3

from mlip.nn.convolution import ChannelwiseConvolution, NeighbourLayout
from mlip.nn.blocking import BlockPlan, blocked_edge_sum
from mlip.nn.layers import ElementLinear, make_linear
from mlip.nn.radial import LayerNormMLP, radial_mlp

INTERACTION_KINDS = ("residual", "plain", "density", "density_residual", "nonlinear")


def _scatter_sum(src: torch.Tensor, index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    out = torch.zeros((num_nodes,) + src.shape[1:], dtype=src.dtype, device=src.device)
    return out.index_add(0, index, src)


class InteractionBlock(torch.nn.Module):
    """Linear-up, radial MLP, channel-wise convolution, linear, normalisation, self-connection.

    ``forward(node_feats [N,F_in], one_hot [N,E], edge_attrs [E,sh], edge_feats [E,n_rad],
    cutoff [E,1]|None, edge_index [2,E], edge_gate [E]|None) -> (A [N, target.dim], sc [N, hidden.dim] | None)``.
    ``cutoff`` (when given) multiplies the radial weights and edge densities (``apply_cutoff = False``).
    ``edge_gate`` (when given) multiplies every edge message and edge density (E3D attribution).
    """

    def __init__(
        self,
        kind: str,
        irreps_node: o3.Irreps,
        irreps_sh: o3.Irreps,
        num_radial: int,
        target_irreps: o3.Irreps,
        hidden_irreps: o3.Irreps,
        num_elements: int,
        avg_num_neighbors: float,
        radial_hidden: list[int],
    ):
        super().__init__()
        if kind not in ("residual", "plain", "density", "density_residual"):
            raise ValueError(f"unknown interaction kind {kind!r}")
        self.kind = kind
        self.residual = kind in ("residual", "density_residual")
        self.use_density = kind in ("density", "density_residual")
        self.avg_num_neighbors = float(avg_num_neighbors)
        self.irreps_node = o3.Irreps(irreps_node)
        self.linear_up = make_linear(self.irreps_node, self.irreps_node)
        self.conv = ChannelwiseConvolution(self.irreps_node, irreps_sh, target_irreps)
        self.radial = radial_mlp([num_radial] + list(radial_hidden) + [self.conv.weight_numel])
        self.target_irreps = o3.Irreps(target_irreps)
        self.linear = make_linear(self.conv.irreps_out, self.target_irreps)
        self.edge_width = int(self.conv.irreps_out.dim)  # elements per edge of the messages (blocking)
        if self.residual:
            self.skip = ElementLinear(self.irreps_node, num_elements, hidden_irreps)
        else:
            self.skip = ElementLinear(self.target_irreps, num_elements, self.target_irreps)
        self.density = radial_mlp([num_radial, 1]) if self.use_density else None

    def forward(
        self,
        node_feats: torch.Tensor,
        one_hot: torch.Tensor,
        edge_attrs: torch.Tensor,
        edge_feats: torch.Tensor,
        cutoff: torch.Tensor | None,
        edge_index: torch.Tensor,
        edge_gate: torch.Tensor | None = None,
        num_local: int | None = None,
        blocking: BlockPlan | None = None,
        layout: NeighbourLayout | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(A, sc)`` of every atom, or of the first ``num_local`` (domain decomposition: receivers < num_local).

        ``blocking``: the edge sum runs a block of receivers at a time (:mod:`mlip.nn.blocking`; edges
        sorted by receiver; the same numbers). ``layout``: the edges' neighbour slots for the convolution
        (unblocked calls; :class:`mlip.nn.convolution.NeighbourLayout`).
        """
        num_nodes = node_feats.shape[0] if num_local is None else num_local
        own_feats, own_hot = (node_feats, one_hot) if num_local is None else (node_feats[:num_local], one_hot[:num_local])
        sc = self.skip(own_feats, own_hot) if self.residual else None
        h = self.linear_up(node_feats)
        edges = (edge_attrs, edge_feats, cutoff, edge_index[0], edge_gate)
        if blocking is None:
            conv = self._edge_sum(h, *edges, edge_index[1], num_nodes, layout)
        else:
            conv = blocked_edge_sum(
                self._edge_sum, edge_index[1], num_nodes, blocking.rows(self.edge_width), edges, (h,),
                recompute=blocking.recompute,
            )
        message = self.linear(conv)
        if self.density is not None:
            edge_density = torch.tanh(self.density(edge_feats) ** 2)
            if cutoff is not None:
                edge_density = edge_density * cutoff
            if edge_gate is not None:  # a gated-off edge is absent from the normalisation too
                edge_density = edge_density * edge_gate.unsqueeze(-1)
            message = message / (_scatter_sum(edge_density, edge_index[1], num_nodes) + 1.0)
        else:
            message = message / self.avg_num_neighbors
        if not self.residual:
            message = self.skip(message, own_hot)
        return message, sc

    def _edge_sum(
        self,
        h: torch.Tensor,
        edge_attrs: torch.Tensor,
        edge_feats: torch.Tensor,
        cutoff: torch.Tensor | None,
        sender: torch.Tensor,
        edge_gate: torch.Tensor | None,
        receiver: torch.Tensor,
        num_receivers: int,
        layout: NeighbourLayout | None = None,
    ) -> torch.Tensor:
        """``sum_s R(e_sr) * CG(h_s, Y_sr)`` of the given edges, ``[num_receivers, conv.irreps_out.dim]``."""
        weights = self.radial(edge_feats)
        if cutoff is not None:
            weights = weights * cutoff
        edge_index = torch.stack([sender, receiver])
        return self.conv(h, edge_attrs, weights, edge_index, edge_gate, num_receivers, layout)


class NonLinearInteraction(torch.nn.Module):
    """MACE-MH-1 non-linear interaction block.

    * ``h~ = W_up h`` with output ``edge_irreps``; source/target element embeddings ``W_s z_s``, ``W_t z_r``
      (``n0`` scalars each, ``n0`` = number of scalar channels of the input) are concatenated to ``e_sr``;
    * ``R = LayerNormMLP([e, W_s z_s, W_t z_r])``, ``n_sr = tanh(MLP_n(..)^2)`` (times the cutoff if given);
    * ``A = W_1 (sum_s R * CG(h~_s, Y_sr)) / (beta * sum_s n_sr + alpha) + W_res h~``;
    * gated non-linearity (SiLU on scalars, sigmoid gates on l > 0, e3nn ``nn.Gate``), then ``W_2``.
    * Self-connection ``sc = W_skip h`` (o3.Linear, element-agnostic).
    """

    def __init__(
        self,
        irreps_node: o3.Irreps,
        irreps_sh: o3.Irreps,
        num_radial: int,
        target_irreps: o3.Irreps,
        hidden_irreps: o3.Irreps,
        edge_irreps: o3.Irreps,
        num_elements: int,
        radial_hidden: list[int],
    ):
        super().__init__()
        self.irreps_node = o3.Irreps(irreps_node)
        self.target_irreps = o3.Irreps(target_irreps)
        n0 = self.irreps_node.count(o3.Irrep("0e"))
        scalar = o3.Irreps(f"{n0}x0e")
        attrs = o3.Irreps(f"{num_elements}x0e")
        self.source_embedding = make_linear(attrs, scalar)
        self.target_embedding = make_linear(attrs, scalar)
        self.linear_up = make_linear(self.irreps_node, edge_irreps)
        self.conv = ChannelwiseConvolution(edge_irreps, irreps_sh, self.target_irreps)
        self.radial = LayerNormMLP([num_radial + 2 * n0] + list(radial_hidden) + [self.conv.weight_numel])
        self.skip = make_linear(self.irreps_node, hidden_irreps)
        scalars = o3.Irreps([(mul, ir) for mul, ir in self.target_irreps if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in self.target_irreps if ir.l > 0])
        gates = o3.Irreps([(mul, "0e") for mul, _ in gated])
        self.gate = e3nn_nn.Gate(
            scalars, [torch.nn.functional.silu] * len(scalars), gates, [torch.sigmoid] * len(gates), gated
        )
        irreps_gate_in = self.gate.irreps_in.simplify()
        self.linear_res = make_linear(edge_irreps, irreps_gate_in)
        self.linear_1 = make_linear(self.conv.irreps_out, irreps_gate_in)
        self.linear_2 = make_linear(self.target_irreps, self.target_irreps)
        self.density = LayerNormMLP([num_radial + 2 * n0, 64, 1])
        self.alpha = torch.nn.Parameter(torch.tensor(20.0))
        self.beta = torch.nn.Parameter(torch.tensor(0.0))

    def forward(
        self,
        node_feats: torch.Tensor,
        one_hot: torch.Tensor,
        edge_attrs: torch.Tensor,
        edge_feats: torch.Tensor,
        cutoff: torch.Tensor | None,
        edge_index: torch.Tensor,
        edge_gate: torch.Tensor | None = None,
        num_local: int | None = None,
        blocking: BlockPlan | None = None,
        layout: NeighbourLayout | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(A, sc)`` of every atom, or of the first ``num_local`` (domain decomposition: receivers < num_local).

        ``blocking`` is accepted for the interface of :class:`InteractionBlock`; this block sums all edges at once
        (with ``layout``, over neighbour slots as :class:`InteractionBlock`).
        """
        num_nodes = node_feats.shape[0] if num_local is None else num_local
        sc = self.skip(node_feats if num_local is None else node_feats[:num_local])
        h = self.linear_up(node_feats)
        res = self.linear_res(h if num_local is None else h[:num_local])
        src = self.source_embedding(one_hot)
        tgt = self.target_embedding(one_hot)
        feats = torch.cat([edge_feats, src[edge_index[0]], tgt[edge_index[1]]], dim=-1)
        weights = self.radial(feats)
        edge_density = torch.tanh(self.density(feats) ** 2)
        if cutoff is not None:
            weights = weights * cutoff
            edge_density = edge_density * cutoff
        if edge_gate is not None:  # a gated-off edge is absent from the normalisation too
            edge_density = edge_density * edge_gate.unsqueeze(-1)
        density = _scatter_sum(edge_density, edge_index[1], num_nodes)
        conv = self.conv(h, edge_attrs, weights, edge_index, edge_gate, layout=layout)
        message = self.linear_1(conv if num_local is None else conv[:num_local])
        message = message / (density * self.beta + self.alpha) + res
        message = self.linear_2(self.gate(message))
        return message, sc
