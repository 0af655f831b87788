"""Channel-wise tensor-product convolution (MACE, Batatia et al. 2022, Eq. 8).

``phi_{sr,k,eta} = R_{k,eta}(r_sr) * CG( h_{s,k} , Y(r_hat_sr) )_eta`` for every parity-allowed path
``eta = (l1, l2 -> l3)``; ``A_r = sum_s phi_sr`` (normalisation is left to the interaction block).

The paths are those of e3nn's ``o3.TensorProduct`` with ``uvu`` instructions and external per-edge
weights (``R``, from the radial MLP), which the module keeps as its specification (instructions, path
normalisations, weight layout). Its output irreps are sorted (e3nn ``Irreps.sort``) and the
instructions permuted accordingly, so a following ``o3.Linear`` can act on the simplified irreps.

Evaluation (when every node irrep has the same multiplicity and the spherical harmonics have
multiplicity 1, as in MACE): the edge part is written as batched matrix products instead of
e3nn's per-path code. For each node irrep ``l1`` all its paths are stacked along one output axis
``k``::

    B[e, i, k]   = sum_j Y[e, j] C[j, i, k]           (C: path weight x wigner_3j(l1, l2, l3), one matmul)
    m[e, k, u]   = sum_i B[e, i, k] h[s(e), i, u]     (bmm [E, K, d1] x [E, d1, u], channels last)
    m[e, k, u]  *= R[e, path(k), u]                   (per run of paths with equal d3: a broadcast)
    A[n, k, u]   = sum_{e: r(e) = n} m[e, k, u]

and only the node sums are put back into e3nn's ``mul_ir`` layout. Same numbers as e3nn (float64:
~1e-14), about 1.5x (float64) to 1.8x (float32) less time for forward + backward on CPU (512-atom Si,
14 336 edges, 32x0e+32x1o, l <= 3; docs/benchmarks.md). Anything else runs e3nn's ``TensorProduct``.
Neighbour slots (:class:`NeighbourLayout`; node irreps of dimension ``d1`` in :attr:`ChannelwiseConvolution.dense`,
by default the scalars): with the edges sorted by receiver and laid out as ``[N, D]`` slots (``D`` the largest
in-degree), a path's sum is one batched matrix product per receiver,
``A[n, u, m] = sum_{s, i} (R[n,s,u] h[s,i,u]) b[n,s,i,m]``, so the per-edge tensors are ``d1 x u`` per path
instead of the messages' ``d3 x u``, and no scatter is needed. For scalar inputs that is 4x fewer bytes
(l <= 3); for ``1o`` inputs it gained nothing (512-atom Si, 64 channels), so those keep the scatter.
Eager calls make the slots themselves; compiled graphs get them from the batch
(:func:`neighbour_slots`, made by :class:`mlip.inference.CompiledPotential`) because their width is data.
Coupling phase: the installed e3nn's ``wigner_3j`` (0.6: some odd ``l1 + l2 + l3`` paths differ in sign
from e3nn 0.4.4; :meth:`ChannelwiseConvolution.path_slices` lets the importer map them).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from e3nn import o3

from mlip.data import keys


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
    edge_index [2,E], edge_gate [E]|None, num_receivers) -> [num_receivers (default N), irreps_out.dim]``;
    receivers (``edge_index[1]``) must be below ``num_receivers``.
    """

    dense: tuple[int, ...] = (1,)
    """Node-irrep dimensions ``d1`` whose sums run over neighbour slots (:meth:`_dense_group`) when the
    edges are sorted by receiver (eager calls make the slots; compiled graphs use them when the batch
    carries them, :func:`neighbour_slots`, else the scatter)."""

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
        self._groups, self._blocks = self._stacked_paths()
        self._refresh_coupling()

    def _stacked_paths(self) -> tuple[list[tuple[int, int, int, list[tuple[int, list[int]]]]], list[tuple[int, int, int]]]:
        """Groups and output blocks of the batched evaluation.

        A group per node irrep: ``(i_in1, d1, input offset, runs)``; its paths are ordered by output
        dimension ``d3`` and ``runs`` lists ``(d3, [instruction index, ..])`` of equal ``d3``, so that a
        run's radial weights broadcast over ``d3`` without being copied per row. Output blocks
        ``(group, run, position)`` are in e3nn output order. Empty lists when the fast evaluation
        does not apply (then :meth:`forward` uses ``self.tp``).
        """
        muls = {mul for mul, _ in self.irreps_node}
        if len(muls) != 1 or any(mul != 1 for mul, _ in self.irreps_sh):
            return [], []
        self.mul = muls.pop()
        groups, where, offset = [], {}, 0
        for i1, (_, ir1) in enumerate(self.irreps_node):
            paths = [(self.irreps_out[ins.i_out].ir.dim, n) for n, ins in enumerate(self.tp.instructions) if ins.i_in1 == i1]
            runs: list[tuple[int, list[int]]] = []
            for d3, n in sorted(paths):
                if not runs or runs[-1][0] != d3:
                    runs.append((d3, []))
                where[self.tp.instructions[n].i_out] = (len(groups), len(runs) - 1, len(runs[-1][1]))
                runs[-1][1].append(n)
            groups.append((i1, ir1.dim, offset, runs))
            offset += self.mul * ir1.dim
        return groups, [where[i] for i in sorted(where)]

    def _refresh_coupling(self) -> None:
        """(Re)build the stacked coupling tensors exactly, in float64, on the module's device.

        Kept float64 whatever the model's dtype (cast per call): a model cast to float32 and back
        keeps exact coefficients. ``coupling_{i1}`` is ``[sh.dim, d1 * K]`` (columns ordered by run,
        path, ``d3``); ``path_order_{i1}`` the instruction index of every path in that order.
        """
        device = next((b.device for b in self.buffers()), torch.device("cpu"))
        sh_offsets = [0]
        for mul, ir in self.irreps_sh:
            sh_offsets.append(sh_offsets[-1] + mul * ir.dim)
        for i1, d1, _, runs in self._groups:
            order = [n for _, paths in runs for n in paths]
            K = sum(d3 * len(paths) for d3, paths in runs)
            coupling = torch.zeros(sh_offsets[-1], d1, K, dtype=torch.float64)
            k0 = 0
            for n in order:
                ins = self.tp.instructions[n]
                l1, l2 = self.irreps_node[i1].ir.l, self.irreps_sh[ins.i_in2].ir.l
                l3, d3 = self.irreps_out[ins.i_out].ir.l, self.irreps_out[ins.i_out].ir.dim
                w3j = o3.wigner_3j(l1, l2, l3, dtype=torch.float64)  # [d1, d2, d3]
                rows = slice(sh_offsets[ins.i_in2], sh_offsets[ins.i_in2 + 1])
                coupling[rows, :, k0 : k0 + d3] = ins.path_weight * w3j.permute(1, 0, 2)
                k0 += d3
            self.register_buffer(f"coupling_{i1}", coupling.reshape(-1, d1 * K).to(device), persistent=False)
            self.register_buffer(f"path_order_{i1}", torch.tensor(order, device=device), persistent=False)

    def _apply(self, fn, recurse=True):  # .to()/.float()/.cuda(): coupling constants stay exact float64
        out = super()._apply(fn, recurse)
        self._refresh_coupling()
        return out

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
        num_receivers: int | None = None,
        layout: NeighbourLayout | None = None,
    ) -> torch.Tensor:
        num_out = node_feats.shape[0] if num_receivers is None else num_receivers
        if self._groups:
            return self._stacked_forward(node_feats, edge_attrs, weights, edge_index, edge_gate, num_out, layout)
        sender, receiver = edge_index[0], edge_index[1]
        msg = self.tp(node_feats[sender], edge_attrs, weights)
        if edge_gate is not None:
            msg = msg * edge_gate.unsqueeze(-1)
        out = torch.zeros(num_out, msg.shape[1], dtype=msg.dtype, device=msg.device)
        return out.index_add(0, receiver, msg)

    def _stacked_forward(
        self,
        node_feats: torch.Tensor,
        edge_attrs: torch.Tensor,
        weights: torch.Tensor,
        edge_index: torch.Tensor,
        edge_gate: torch.Tensor | None,
        num_out: int,
        layout: NeighbourLayout | None = None,
    ) -> torch.Tensor:
        """The batched-matmul evaluation (module docstring); same result as ``self.tp`` + scatter."""
        sender, receiver = edge_index[0], edge_index[1]
        num_nodes, num_edges, u = node_feats.shape[0], edge_attrs.shape[0], self.mul
        path_weights = weights.reshape(num_edges, len(self.tp.instructions), u)  # e3nn uvu layout: [E, path, u]
        if layout is None and self.dense and not torch.compiler.is_compiling():
            layout = neighbour_layout(sender, receiver, num_nodes, num_out)
        sums = []
        for i1, d1, offset, runs in self._groups:
            if layout is not None and d1 in self.dense:
                sums.append(self._dense_group(layout, node_feats, edge_attrs, path_weights, edge_gate, i1, d1, offset, runs))
                continue
            # channels last ([N, d1, u]) before the gather: the transposition is on nodes, not edges
            h = node_feats[:, offset : offset + u * d1].reshape(num_nodes, u, d1).transpose(1, 2)
            x = h.reshape(num_nodes, d1 * u).index_select(0, sender).reshape(num_edges, d1, u)
            coupling = getattr(self, f"coupling_{i1}").to(edge_attrs.dtype)
            b = (edge_attrs @ coupling).reshape(num_edges, d1, coupling.shape[1] // d1).transpose(1, 2)  # [E, K, d1]
            # split (not slicing): its backward concatenates, no zero-filled full-size gradients
            b_runs = b.split([d3 * len(paths) for d3, paths in runs], dim=1)
            r_runs = path_weights.index_select(1, getattr(self, f"path_order_{i1}")).split(
                [len(paths) for _, paths in runs], dim=1
            )
            group_sums = []
            for (d3, paths), b_run, r_run in zip(runs, b_runs, r_runs):
                # d1 = 1 (scalar inputs): an outer product, as a broadcast product (a bmm with inner
                # size 1 is several times slower on CPU; both are the same single multiplication)
                m = b_run * x if d1 == 1 else torch.bmm(b_run, x)
                m = m.reshape(num_edges, len(paths), d3, u) * r_run.unsqueeze(2)
                if edge_gate is not None:
                    m = m * edge_gate.view(-1, 1, 1, 1)
                zeros = torch.zeros(num_out, len(paths) * d3 * u, dtype=m.dtype, device=m.device)
                node = zeros.index_add(0, receiver, m.reshape(num_edges, len(paths) * d3 * u))
                group_sums.append(node.reshape(num_out, len(paths), d3, u))
            sums.append(group_sums)
        blocks = [
            sums[g][r][k] if isinstance(sums[g][r], list)
            else sums[g][r][:, k].transpose(1, 2).reshape(num_out, u * sums[g][r].shape[2])
            for g, r, k in self._blocks
        ]
        return torch.cat(blocks, dim=-1)

    def _dense_group(
        self,
        layout: NeighbourLayout,
        node_feats: torch.Tensor,
        edge_attrs: torch.Tensor,
        path_weights: torch.Tensor,
        edge_gate: torch.Tensor | None,
        i1: int,
        d1: int,
        offset: int,
        runs: list[tuple[int, list[int]]],
    ) -> list[list[torch.Tensor]]:
        """One node irrep's sums over each receiver's ``D`` neighbour slots, a matrix product per path.

        ``A[n, u, m] = sum_{(s, i)} z[n, s, i, u] b[n, s, i, m]`` with ``z = R_path * h_sender`` (``[N, D, d1, u]``)
        and ``b = Y C`` (``[N, D, d1, d3]``): the per-edge tensors are ``d1 x u`` per path instead of the
        messages' ``d3 x u``, and the sum over senders is the matrix product's (no scatter). Returns, per
        run, each path's ``[num_out, u * d3]`` block (e3nn ``mul_ir`` layout).
        """
        u, num_out, width = self.mul, layout.num_out, layout.width
        h = node_feats[:, offset : offset + u * d1].reshape(-1, u, d1).transpose(1, 2).reshape(-1, d1 * u)
        h = torch.cat([h, h.new_zeros(1, d1 * u)])  # empty slots take this zero row
        x = h.index_select(0, layout.sender).reshape(num_out, width, d1, u)
        coupling = getattr(self, f"coupling_{i1}").to(edge_attrs.dtype)
        b = layout.gather(edge_attrs) @ coupling  # [N * D, d1 * K]
        if edge_gate is not None:
            b = b * layout.gather(edge_gate).unsqueeze(-1)
        b = b.reshape(num_out, width * d1, coupling.shape[1] // d1)
        r = layout.gather(path_weights.index_select(1, getattr(self, f"path_order_{i1}")))
        r = r.reshape(num_out, width, 1, -1, u)
        out, p, k = [], 0, 0
        for d3, paths in runs:
            run = []
            for _ in paths:
                z = (r[:, :, :, p] * x).reshape(num_out, width * d1, u)
                run.append(torch.bmm(z.transpose(1, 2), b[:, :, k : k + d3]).reshape(num_out, u * d3))
                p, k = p + 1, k + d3
            out.append(run)
        return out


class NeighbourLayout(NamedTuple):
    """Edges sorted by receiver, laid out as ``[num_out, width]`` slots (each receiver's edges, then empty).

    ``slots [num_out * width]``: the edge in each slot (empty slots repeat the last edge: their node row
    is zero, so they add nothing and get zero gradients), ``None`` when every receiver has ``width`` edges;
    ``sender [num_out * width]``: its sender, ``num_nodes`` (a zero row) for empty slots.
    """

    num_out: int
    width: int
    slots: torch.Tensor | None
    sender: torch.Tensor

    def gather(self, edge_tensor: torch.Tensor) -> torch.Tensor:
        """``[E, ...] -> [num_out * width, ...]``."""
        return edge_tensor if self.slots is None else edge_tensor.index_select(0, self.slots)


MAX_EMPTY_SLOTS = 1.0
"""The slot layout is used while empty slots are at most this fraction of the edges (else: the scatter)."""


def neighbour_layout(sender: torch.Tensor, receiver: torch.Tensor, num_nodes: int, num_out: int) -> NeighbourLayout | None:
    """The slot layout of sorted edges (receivers ``< num_out``), or ``None`` (unsorted, empty, too sparse)."""
    num_edges = int(receiver.shape[0])
    if num_edges == 0 or num_out == 0 or bool((receiver[1:] < receiver[:-1]).any()):
        return None
    counts = torch.bincount(receiver, minlength=num_out)
    if counts.shape[0] > num_out:
        return None
    width = int(counts.max())
    if num_out * width == num_edges:
        return NeighbourLayout(num_out, width, None, sender)
    if num_out * width > (1.0 + MAX_EMPTY_SLOTS) * num_edges:
        return None
    edges = torch.arange(num_edges, device=receiver.device)
    first = torch.cumsum(counts, 0) - counts
    where = receiver * width + (edges - first[receiver])
    slots = torch.full((num_out * width,), num_edges - 1, dtype=torch.long, device=receiver.device)
    slots[where] = edges
    slot_sender = torch.full((num_out * width,), num_nodes, dtype=torch.long, device=receiver.device)
    slot_sender[where] = sender
    return NeighbourLayout(num_out, width, slots, slot_sender)


def neighbour_slots(edge_index: torch.Tensor, num_nodes: int) -> dict[str, torch.Tensor] | None:
    """``{NEIGHBOUR_SLOTS: [N, D], SLOT_SENDERS: [N, D]}`` of a batch's edges, always padded (one compiled
    graph whatever the degrees), or ``None`` when :func:`neighbour_layout` refuses the edges."""
    layout = neighbour_layout(edge_index[0], edge_index[1], num_nodes, num_nodes)
    if layout is None:
        return None
    slots = layout.slots
    if slots is None:
        slots = torch.arange(edge_index.shape[1], device=edge_index.device)
    # fresh tensors, not views: dynamo guards on a view input's base (here edge_index), one graph more
    return {keys.NEIGHBOUR_SLOTS: slots.reshape(num_nodes, layout.width).clone(),
            keys.SLOT_SENDERS: layout.sender.reshape(num_nodes, layout.width).clone()}


def batch_layout(batch: dict[str, torch.Tensor], num_nodes: int, num_out: int) -> NeighbourLayout | None:
    """The batch's neighbour slots (:func:`neighbour_slots`, made before a compiled call: a graph cannot make
    them, their width is data), or ``None``; eager convolutions then make their own."""
    slots = batch.get(keys.NEIGHBOUR_SLOTS)
    if slots is None or num_out != num_nodes:
        return None
    return NeighbourLayout(num_out, slots.shape[1], slots.reshape(-1), batch[keys.SLOT_SENDERS].reshape(-1))


def uses_neighbour_slots(model: torch.nn.Module) -> bool:
    """Whether any convolution of ``model`` sums over neighbour slots (then compiled calls pass them in)."""
    return any(isinstance(m, ChannelwiseConvolution) and m._groups and m.dense for m in model.modules())
