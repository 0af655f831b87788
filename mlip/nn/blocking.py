"""Eager inference a block of atoms at a time: edge sums per receiver block, products per node block.

An interaction's per-edge tensors (radial weights ``[E, paths x channels]``, the convolution's
``[E, K, channels]`` messages) are the largest tensors of a MACE call: 290 MB each in float64 for
512-atom Si with 64 channels, 2.3 GB for 4096 atoms. Evaluated whole, every one of them is a fresh
``mmap`` of the C allocator (glibc serves blocks above 32 MiB that way), so each first touch of each
page faults: about a million page faults per 512-atom call, a third to half of its time on one core
(``docs/benchmarks.md``, "Inference per core"). Evaluated for a block of receivers whose edges
number at most ``max_edges``, the same tensors are a few MB, come from the allocator's free lists and
stay in cache between the producing and the consuming operation.

With ``recompute`` (large systems, :meth:`Blocking.plan`) each block is wrapped in
:func:`torch.utils.checkpoint.checkpoint`: the backward re-evaluates the block's messages instead of
keeping every block's intermediates, so the peak memory of an energy+forces call holds the node
features and one block's edge tensors, not all edges' at once.

Blocks are whole receivers, so every receiver's messages are summed in one ``index_add`` in edge
order, as in the unchunked sum. Results differ from one block by rounding only: matrix products over
fewer rows may sum in another order, and node-feature gradients are summed block by block (float64:
energies equal in the tests, forces ~1e-16 eV/A; float32: ~1e-8 relative). Edges must be
sorted by receiver (the calculator's and the data pipeline's canonical order); otherwise, and when all
edges fit in one block, the caller's function runs once on everything. Every edge block takes the same
number of edges (the edges past its receivers go to a dropped row) and, when re-evaluating, the C heap's
free pages are returned every :data:`TRIM_EVERY` blocks: blocks of varying sizes fragmented glibc's heap,
whose free chunks stay resident (9 GB of resident memory for 1.5 GB of live tensors, 4096-atom Si).

The symmetric contraction is per atom, so :func:`blocked_rows` runs it on consecutive rows (its
intermediates are ``[atoms, channels, ...]``: 200 MB in float64 for 512 atoms and 64 channels).

Block sizes come from one budget, :attr:`Blocking.elements` for the largest intermediate of a block
(``MACE.blocking``): 2**21 elements are 16 MiB in float64, below glibc's largest dynamic mmap threshold
(32 MiB), so the blocks' tensors are recycled through the allocator's free lists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from mlip.allocator import release_free_memory

class BlockPlan(NamedTuple):
    """How one eager call is blocked: ``elements`` of a block's largest intermediate, and ``recompute``."""

    elements: int
    recompute: bool

    def rows(self, width: int) -> int:
        """Rows (edges or atoms) per block for rows of ``width`` elements: at least 1."""
        return max(1, self.elements // max(1, width))


class Blocking(NamedTuple):
    """How eager inference blocks a call (``MACE.blocking``).

    ``elements``: elements of a block's largest intermediate (rows per block = ``elements // width``);
    2**21 elements are 16 MiB in float64. ``recompute_bytes``: the blocks are re-evaluated in the backward
    (:func:`torch.utils.checkpoint.checkpoint`) when the call's per-row tensors (every layer's edge messages
    and product intermediates, counted once) exceed this many bytes; below, they are kept, which is faster
    (512-atom Si, 64 channels, float64: 0.7 GB counted, 1.4 s instead of 2.1 s per call, a peak of about
    3.5x the count).
    """

    elements: int = 2**21
    recompute_bytes: int = 2**30

    def plan(self, counted_elements: int, dtype: torch.dtype) -> BlockPlan:
        """The plan of a call whose per-row tensors hold ``counted_elements`` elements of ``dtype``."""
        itemsize = torch.empty((), dtype=dtype).element_size()
        recompute = torch.is_grad_enabled() and counted_elements * itemsize > self.recompute_bytes
        return BlockPlan(self.elements, recompute)


def receiver_blocks(receiver: torch.Tensor, num_nodes: int, max_edges: int) -> list[tuple[int, int, int, int]] | None:
    """``(node_start, node_stop, edge_start, edge_stop)`` of consecutive receiver blocks, or ``None``.

    ``receiver [E]`` (long, every entry ``< num_nodes``). Each block holds at most ``max_edges`` edges
    unless a single receiver has more. ``None`` when blocking does not apply: ``max_edges <= 0``, all
    edges fit in one block, or the receivers are not sorted.
    """
    num_edges = int(receiver.shape[0])
    if max_edges <= 0 or num_edges <= max_edges:
        return None
    if bool((receiver[1:] < receiver[:-1]).any()):
        return None
    counts = torch.bincount(receiver, minlength=num_nodes)[:num_nodes]
    offsets = np.concatenate([[0], np.cumsum(counts.cpu().numpy())])  # edges before each node
    blocks = []
    start = 0
    while start < num_nodes:
        stop = int(np.searchsorted(offsets, offsets[start] + max_edges, side="right")) - 1
        stop = min(max(stop, start + 1), num_nodes)
        blocks.append((start, stop, int(offsets[start]), int(offsets[stop])))
        start = stop
    return blocks


def blocked_edge_sum(
    block_sum: Callable[..., torch.Tensor],
    receiver: torch.Tensor,
    num_nodes: int,
    max_edges: int,
    edge_inputs: Sequence[torch.Tensor | None],
    node_inputs: Sequence[torch.Tensor],
    recompute: bool,
) -> torch.Tensor:
    """``[num_nodes, F]`` sums over edges, one receiver block at a time.

    ``block_sum(*node_inputs, *edge_inputs_of_block, local_receiver [E_b], num_block_nodes) -> [n_b, F]``
    sums the messages of a block's edges into its receivers (``local_receiver`` counts from the block's
    first node). Edge inputs are ``[E, ...]`` tensors or ``None``; node inputs are passed whole.
    ``recompute`` re-evaluates each block in the backward (:func:`torch.utils.checkpoint.checkpoint`).
    """
    blocks = receiver_blocks(receiver, num_nodes, max_edges)
    if blocks is None:
        return block_sum(*node_inputs, *edge_inputs, receiver, num_nodes)
    if recompute:
        block_sum = _trimmed(block_sum)
    num_edges = int(receiver.shape[0])
    sums = []
    for node_start, node_stop, edge_start, edge_stop in blocks:
        # every block takes max_edges edges (the last one fewer): the edges past its own go to one extra
        # receiver row, dropped after the sum. Equal-sized temporaries block after block let the allocator
        # reuse the previous block's memory; blocks of varying size fragmented glibc's heap (a peak of
        # 9 GB of resident memory for 1.5 GB of live tensors, 4096-atom Si, float64)
        padded_stop = min(edge_start + max_edges, num_edges) if edge_stop - edge_start <= max_edges else edge_stop
        num_block = node_stop - node_start
        edges = [_slice(t, edge_start, padded_stop) for t in edge_inputs]
        local = (receiver[edge_start:padded_stop] - node_start).clamp(max=num_block)
        args = (*node_inputs, *edges, local, num_block + 1)
        block = checkpoint(block_sum, *args, use_reentrant=False) if recompute else block_sum(*args)
        sums.append(block[:num_block])
    return torch.cat(sums, dim=0)  # (a slice assignment instead would make a full-size gradient per block)


def blocked_rows(
    fn: Callable[..., torch.Tensor],
    max_rows: int,
    row_inputs: Sequence[torch.Tensor | None],
    recompute: bool,
) -> torch.Tensor:
    """``fn(*row_inputs)`` of a row-wise (per-atom) function, ``max_rows`` rows at a time, concatenated.

    ``row_inputs`` share their first dimension (or are ``None``). ``max_rows <= 0`` or fewer rows: one call.
    ``recompute`` as in :func:`blocked_edge_sum`.
    """
    rows = next(t.shape[0] for t in row_inputs if t is not None)
    if max_rows <= 0 or rows <= max_rows:
        return fn(*row_inputs)
    if recompute:
        fn = _trimmed(fn)
    outs = []
    for start in range(0, rows, max_rows):
        args = [_slice(t, start, start + max_rows) for t in row_inputs]
        outs.append(checkpoint(fn, *args, use_reentrant=False) if recompute else fn(*args))
    return torch.cat(outs, dim=0)


TRIM_EVERY = 8
"""Re-evaluated blocks between two returns of free heap pages to the system (:func:`_trimmed`)."""


def _trimmed(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``fn`` that returns the C heap's free pages every :data:`TRIM_EVERY` calls (forward and recompute).

    Blocks of large calls free and allocate tens of MB each; glibc keeps the holes resident, so the
    resident set grew to 2-6x the live tensors (4096-atom Si). Trimming bounds it.
    """
    calls = [0]

    def run(*args: torch.Tensor | int | None) -> torch.Tensor:
        calls[0] += 1
        if calls[0] % TRIM_EVERY == 0:
            release_free_memory()
        return fn(*args)

    return run


def _slice(tensor: torch.Tensor | None, start: int, stop: int) -> torch.Tensor | None:
    return None if tensor is None else tensor[start:stop]
