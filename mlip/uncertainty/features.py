"""Last-layer features of an mlip MACE model: the inputs of each readout's final linear layer.

The energy of a per-atom-readout model is (:mod:`mlip.nn.model`)

``E = sum_i [E0(z_i, h) + scale_h (E_ZBL,i + sum_t readout_t(x_i^t)) + shift_h]``

and every readout ends in a bias-free linear map to one scalar per head: ``readout_t(x) = phi_t(x) . W_t[:, h]``
with ``phi_t`` the input of that linear layer (the layer's invariant node features for a linear readout,
the hidden activations of an MLP readout, only the block of head ``h``). So, per structure,

``E = const + f . w_h``,  ``f = scale_h sum_i concat_t phi_t(x_i^t)`` [P],  ``w_h = concat_t W_t[:, h]`` [P].

``f`` are the *last-layer features* of LLPR (MACE-MP-0 paper, App. D; Bigi et al., "A prediction rigidity
formalism for low-cost uncertainties in trained neural networks", 2024) and ``f = dE/dw_h``: the energy is
linear in the effective last-layer weights ``w_h``. ``W_t`` is measured by applying the linear layer to unit
vectors, so e3nn's ``1/sqrt(fan_in)`` normalisation (or any backend's) is part of ``w`` and ``f`` is the raw
layer input times ``scale_h``.

Features are captured with forward pre-hooks registered only inside :func:`capture_features`: the model's
forward, outputs and cost are unchanged when no features are asked for. Edge-readout models
(``edge_energy_readout``) are not supported (their energy is not a sum of per-atom readouts).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from e3nn import o3

from mlip.data import keys
from mlip.errors import ConfigError


@dataclass
class _Block:
    """One readout's final linear layer: the module, its input columns per head ([H, k] long)."""

    module: torch.nn.Module
    columns: torch.Tensor


def _scalar_columns(irreps: o3.Irreps) -> torch.Tensor:
    """Indices of the ``0e`` components of ``irreps`` (the only inputs a linear map to scalars uses)."""
    cols: list[int] = []
    for (mul, ir), sl in zip(irreps, irreps.slices()):
        if ir == o3.Irrep("0e"):
            cols.extend(range(sl.start, sl.start + mul))
    return torch.tensor(cols, dtype=torch.long)


def _blocks(model: torch.nn.Module) -> list[_Block]:
    """The final linear layer of every readout with the input columns each head reads."""
    if getattr(model, "edge_readout", None) is not None:
        raise ConfigError("LLPR needs per-atom readouts; edge_energy_readout models are not supported")
    num_heads = len(model.heads)
    blocks: list[_Block] = []
    for readout in model.readouts:
        if hasattr(readout, "linear_2"):  # MLPReadout: hidden units, one block per head
            lin = readout.linear_2
            cols = _scalar_columns(o3.Irreps(lin.irreps_in))
            size = readout.hidden_dim // num_heads
            owner = cols // size
            per_head = [cols[owner == h] for h in range(num_heads)]
            if len({len(c) for c in per_head}) != 1:
                raise ConfigError("LLPR: MLP readout heads have different numbers of scalar hidden units")
            blocks.append(_Block(lin, torch.stack(per_head)))
        else:  # LinearReadout: every head reads the same scalar node features
            lin = readout.linear
            cols = _scalar_columns(o3.Irreps(lin.irreps_in))
            blocks.append(_Block(lin, cols.unsqueeze(0).expand(num_heads, -1).contiguous()))
    return blocks


def feature_dim(model: torch.nn.Module) -> int:
    """P, the number of last-layer features per head."""
    return sum(int(b.columns.shape[1]) for b in _blocks(model))


@torch.no_grad()
def readout_weights(model: torch.nn.Module) -> torch.Tensor:
    """Effective last-layer weights ``w`` [H, P] with ``E = const + f . w_h`` (float64, CPU)."""
    rows = []
    for block in _blocks(model):
        param = next(block.module.parameters())
        dim = o3.Irreps(block.module.irreps_in).dim
        eye = torch.eye(dim, dtype=param.dtype, device=param.device)
        w_full = block.module(eye).to(torch.float64).cpu()  # [dim_in, H]: response to each unit input
        rows.append(torch.stack([w_full[block.columns[h], h] for h in range(w_full.shape[1])]))
    return torch.cat(rows, dim=1)


@contextmanager
def capture_features(model: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, every model forward appends the per-atom inputs of the final readout layers
    (one tensor [N, dim_in] per readout, in layer order) to the yielded list. Hooks are removed on exit."""
    captured: list[torch.Tensor] = []
    handles = [
        b.module.register_forward_pre_hook(lambda _m, args: captured.append(args[0])) for b in _blocks(model)
    ]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def structure_features(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], captured: list[torch.Tensor]
) -> torch.Tensor:
    """Per-structure last-layer features ``f`` [B, P] from the captured readout inputs of one forward.

    ``f_b = scale_{h_b} sum_{i in b} concat_t phi_t(x_i^t)``; differentiable with respect to positions.
    """
    blocks = _blocks(model)
    if len(captured) != len(blocks):
        raise RuntimeError(f"expected {len(blocks)} captured readout inputs, got {len(captured)}")
    node_graph = batch[keys.BATCH]
    num_graphs = batch[keys.PTR].shape[0] - 1
    graph_head = (batch[keys.HEAD] if keys.HEAD in batch
                  else torch.zeros(num_graphs, dtype=torch.long, device=node_graph.device))
    node_head = graph_head[node_graph]
    parts = []
    for block, x in zip(blocks, captured):
        cols = block.columns.to(x.device)[node_head]  # [N, k]
        parts.append(x.gather(1, cols))
    per_atom = torch.cat(parts, dim=1) * model.scale.to(captured[0].dtype)[node_head].unsqueeze(1)
    out = torch.zeros(num_graphs, per_atom.shape[1], dtype=per_atom.dtype, device=per_atom.device)
    return out.index_add(0, node_graph, per_atom)
