"""Channel-wise tensor-product convolution (MACE, Batatia et al. 2022, Eq. 8).

``phi_{sr,k,eta} = R_{k,eta}(r_sr) * CG( h_{s,k} , Y(r_hat_sr) )_eta`` for every parity-allowed path
``eta = (l1, l2 -> l3)``; ``A_r = sum_s phi_sr`` (normalisation is left to the interaction block).

The tensor product is e3nn's ``o3.TensorProduct`` with ``uvu`` instructions and external per-edge
weights (``R``, from the radial MLP). Its output irreps are sorted (e3nn ``Irreps.sort``) and the
instructions permuted accordingly, so a following ``o3.Linear`` can act on the simplified irreps.
Coupling phase: the installed e3nn's ``wigner_3j`` (0.6: some odd ``l1 + l2 + l3`` paths differ in sign
from e3nn 0.4.4; :meth:`ChannelwiseConvolution.path_slices` lets the importer map them).
"""

from __future__ import annotations

import torch
from e3nn import o3


def channelwise_instructions(
    irreps_node: o3.Irreps, irreps_sh: o3.Irreps, target: o3.Irreps
) -> tuple[o3.Irreps, list[tuple[int, int, int, str, bool]]]:
    """``uvu`` instructions for every ``ir_node x ir_sh -> ir_out`` with ``ir_out`` in ``target``.

    Returns the sorted output irreps and the instructions pointing into them, ordered by output.
    """
    outs: list[tuple[int, o3.Irrep]] = []
    instr = []
    for i, (mul, ir_in) in enumerate(irreps_node):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in target:
                    instr.append((i, j, len(outs)))
                    outs.append((mul, ir_out))
    irreps_out, perm, _ = o3.Irreps(outs).sort()
    instructions = sorted(((i, j, perm[k], "uvu", True) for i, j, k in instr), key=lambda t: t[2])
    return irreps_out, instructions


class ChannelwiseConvolution(torch.nn.Module):
    """Edge messages and their sum over senders.

    ``forward(node_feats [N, irreps_node.dim], edge_attrs [E, sh.dim], weights [E, weight_numel],
    edge_index [2,E], edge_gate [E]|None) -> [N, irreps_out.dim]``.
    """

    def __init__(self, irreps_node: o3.Irreps | str, irreps_sh: o3.Irreps | str, target: o3.Irreps | str):
        super().__init__()
        self.irreps_node = o3.Irreps(irreps_node)
        self.irreps_sh = o3.Irreps(irreps_sh)
        self.irreps_out, instructions = channelwise_instructions(self.irreps_node, self.irreps_sh, o3.Irreps(target))
        self.tp = o3.TensorProduct(
            self.irreps_node,
            self.irreps_sh,
            self.irreps_out,
            instructions=instructions,
            shared_weights=False,
            internal_weights=False,
        )
        self.weight_numel = self.tp.weight_numel

    def path_slices(self) -> list[tuple[tuple[int, int, int], slice]]:
        """``((l1, l2, l3), slice)`` of every path's entries in the weight vector (for convention mapping)."""
        out = []
        start = 0
        for ins in self.tp.instructions:
            n = 1
            for s in ins.path_shape:
                n *= s
            ls = (self.irreps_node[ins.i_in1].ir.l, self.irreps_sh[ins.i_in2].ir.l, self.irreps_out[ins.i_out].ir.l)
            out.append((ls, slice(start, start + n)))
            start += n
        return out

    def forward(
        self,
        node_feats: torch.Tensor,
        edge_attrs: torch.Tensor,
        weights: torch.Tensor,
        edge_index: torch.Tensor,
        edge_gate: torch.Tensor | None = None,
    ) -> torch.Tensor:
        sender, receiver = edge_index[0], edge_index[1]
        msg = self.tp(node_feats[sender], edge_attrs, weights)
        if edge_gate is not None:
            msg = msg * edge_gate.unsqueeze(-1)
        out = torch.zeros(node_feats.shape[0], msg.shape[1], dtype=msg.dtype, device=msg.device)
        return out.index_add(0, receiver, msg)
