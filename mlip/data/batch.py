"""Batching: graph dicts -> one disjoint graph of torch tensors, and seeded loaders.

No PyTorch Geometric: :func:`collate` concatenates atoms and edges (shifting the edge indices by
each graph's first atom), stacks per-graph entries, and adds ``batch`` (graph of each atom) and
``ptr`` (first atom of each graph, plus the total). Keys and shapes: docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.utils.data

from mlip.data import keys
from mlip.data.graph import GRAPH_KEYS, NODE_KEYS, graph_sizes

_LONG_KEYS = keys.LONG_KEYS
_BOOL_KEYS = keys.BOOL_KEYS
FLOAT64_KEYS = {keys.ENERGY}
"""Float entries kept in float64 whatever the batch dtype: total energies (~1e4 eV) would lose ~1e-3 eV
to float32 rounding; the model returns float64 energies too (docs/model.md, "Precision")."""


def _to_tensor(key: str, array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    if key in _LONG_KEYS:
        return torch.as_tensor(np.ascontiguousarray(array, dtype=np.int64))
    if key in _BOOL_KEYS:
        return torch.as_tensor(np.ascontiguousarray(array, dtype=bool))
    out = torch.as_tensor(np.ascontiguousarray(array, dtype=np.float64))
    return out if key in FLOAT64_KEYS else out.to(dtype)


def collate(graphs: Sequence[dict[str, np.ndarray]], dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """Merge graph dicts (from :func:`mlip.data.graph.configuration_to_graph`) into one batch.

    Floating entries get ``dtype`` (except the float64 ``energy`` labels, :data:`FLOAT64_KEYS`); integer
    entries are long, masks and pbc bool.
    """
    if len(graphs) == 0:
        raise ValueError("cannot collate an empty list of graphs")
    sizes = np.array([graph_sizes(g) for g in graphs], dtype=np.int64).reshape(-1, 2)
    n_atoms = sizes[:, 0]
    ptr = np.concatenate([[0], np.cumsum(n_atoms)])
    out: dict[str, np.ndarray] = {}
    for key in NODE_KEYS:
        out[key] = np.concatenate([g[key] for g in graphs], axis=0)
    out[keys.EDGE_INDEX] = np.concatenate(
        [g[keys.EDGE_INDEX] + offset for g, offset in zip(graphs, ptr[:-1])], axis=1
    ).reshape(2, -1)
    out[keys.UNIT_SHIFTS] = np.concatenate([g[keys.UNIT_SHIFTS] for g in graphs], axis=0).reshape(-1, 3)
    for key in GRAPH_KEYS:
        out[key] = np.stack([np.asarray(g[key]) for g in graphs], axis=0)
    out[keys.BATCH] = np.repeat(np.arange(len(graphs), dtype=np.int64), n_atoms)
    out[keys.PTR] = ptr
    return {key: _to_tensor(key, value, dtype) for key, value in out.items()}


def uncollate(batch: dict[str, torch.Tensor]) -> list[dict[str, np.ndarray]]:
    """Split a batch back into graph dicts (numpy; inverse of :func:`collate` up to dtype)."""
    ptr = batch[keys.PTR].cpu().numpy()
    n_graphs = ptr.shape[0] - 1
    edge_index = batch[keys.EDGE_INDEX].cpu().numpy()
    edge_graph = batch[keys.BATCH].cpu().numpy()[edge_index[1]] if edge_index.shape[1] else np.zeros(0, dtype=np.int64)
    graphs = []
    for b in range(n_graphs):
        lo, hi = int(ptr[b]), int(ptr[b + 1])
        edges = edge_graph == b
        g: dict[str, np.ndarray] = {}
        for key in NODE_KEYS:
            g[key] = batch[key][lo:hi].cpu().numpy()
        g[keys.EDGE_INDEX] = edge_index[:, edges] - lo
        g[keys.UNIT_SHIFTS] = batch[keys.UNIT_SHIFTS].cpu().numpy()[edges]
        for key in GRAPH_KEYS:
            g[key] = batch[key][b].cpu().numpy()
        graphs.append(g)
    return graphs


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of ``n`` items for ``epoch``; depends only on (seed, epoch)."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def pack_greedy(
    sizes: Sequence[tuple[int, int]] | np.ndarray,
    batch_size: int,
    max_atoms: int | None = None,
    max_edges: int | None = None,
    order: Sequence[int] | None = None,
) -> list[list[int]]:
    """Graph indices, taken in ``order`` (default 0..n-1), packed greedily into batches: the one packing rule.

    ``sizes[i] = (atoms, edges)`` of graph ``i``. A graph joins the current batch while the batch stays within
    ``batch_size`` graphs, ``max_atoms`` atoms and ``max_edges`` edges (``None``: no budget); a single graph
    over budget forms a batch of its own. Used by training's sampler and by evaluation's in-order batches.
    """
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    batches: list[list[int]] = []
    current: list[int] = []
    atoms = edges = 0
    for idx in (range(len(sizes)) if order is None else order):
        a, e = int(sizes[idx, 0]), int(sizes[idx, 1])
        fits = len(current) < batch_size
        fits = fits and (max_atoms is None or atoms + a <= max_atoms)
        fits = fits and (max_edges is None or edges + e <= max_edges)
        if current and not fits:
            batches.append(current)
            current, atoms, edges = [], 0, 0
        current.append(int(idx))
        atoms += a
        edges += e
    if current:
        batches.append(current)
    return batches


class GraphBatchSampler(torch.utils.data.Sampler):
    """Yields lists of graph indices: fixed-size batches, or greedy packing under a budget.

    With ``max_atoms``/``max_edges`` the graphs (in the epoch's order) are packed greedily: a graph
    joins the current batch while the batch stays within ``batch_size`` graphs and the atom/edge
    budget; a single graph larger than the budget forms a batch of its own. ``drop_last`` drops the
    final batch when it holds fewer than ``batch_size`` graphs. With ``num_replicas > 1`` each rank
    gets every ``num_replicas``-th batch (batches truncated to an equal count per rank).
    """

    def __init__(
        self, sizes: Sequence[tuple[int, int]], batch_size: int, shuffle: bool, seed: int = 0,
        max_atoms: int | None = None, max_edges: int | None = None, drop_last: bool = False,
        num_replicas: int = 1, rank: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.max_atoms = max_atoms
        self.max_edges = max_edges
        self.drop_last = bool(drop_last)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of ``epoch`` (the order depends only on seed and epoch)."""
        self.epoch = int(epoch)

    def batches(self) -> list[list[int]]:
        """All batches of the current epoch (for this rank)."""
        n = self.sizes.shape[0]
        order = epoch_permutation(n, self.seed, self.epoch) if self.shuffle else np.arange(n)
        batches = pack_greedy(self.sizes, self.batch_size, self.max_atoms, self.max_edges, order.tolist())
        if batches and self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.num_replicas > 1:
            per_rank = len(batches) // self.num_replicas
            batches = batches[self.rank::self.num_replicas][:per_rank]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


class _GraphDataset(torch.utils.data.Dataset):
    def __init__(self, graphs: Sequence[dict[str, np.ndarray]]) -> None:
        self.graphs = graphs

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.graphs[index]


class Collater:
    """Picklable ``collate_fn`` (so DataLoader workers can use it)."""

    def __init__(self, dtype: torch.dtype = torch.float64) -> None:
        self.dtype = dtype

    def __call__(self, graphs: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        return collate(graphs, self.dtype)


class GraphLoader:
    """Iterable of batches with ``__len__`` and ``set_epoch`` (a torch DataLoader underneath)."""

    def __init__(self, graphs: Sequence[dict[str, np.ndarray]], sampler: GraphBatchSampler,
                 dtype: torch.dtype, num_workers: int = 0) -> None:
        self.graphs = graphs
        self.sampler = sampler
        self.dtype = dtype
        self.loader = torch.utils.data.DataLoader(
            _GraphDataset(graphs), batch_sampler=sampler, collate_fn=Collater(dtype),
            num_workers=num_workers,
        )

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of ``epoch``; call before iterating (exact resume)."""
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.sampler)


def make_loader(
    graphs: Sequence[dict[str, np.ndarray]], batch_size: int, shuffle: bool, seed: int = 0,
    dtype: torch.dtype = torch.float64, max_atoms: int | None = None, max_edges: int | None = None,
    drop_last: bool = False, num_workers: int = 0, num_replicas: int = 1, rank: int = 0,
) -> GraphLoader:
    """A loader over ``graphs`` yielding collated batches.

    Args:
        graphs: graph dicts from :func:`mlip.data.graph.configuration_to_graph`.
        batch_size: most graphs per batch.
        shuffle: shuffle every epoch with ``numpy.random.default_rng([seed, epoch])``.
        seed: shuffle seed.
        dtype: floating dtype of the batch tensors.
        max_atoms, max_edges: optional budgets per batch (greedy packing; see GraphBatchSampler).
        drop_last: drop a final batch with fewer than ``batch_size`` graphs.
        num_workers: DataLoader worker processes.
        num_replicas, rank: split the batches between data-parallel ranks.
    """
    sizes = [graph_sizes(g) for g in graphs]
    sampler = GraphBatchSampler(sizes, batch_size, shuffle, seed, max_atoms, max_edges, drop_last,
                                num_replicas, rank)
    return GraphLoader(graphs, sampler, dtype, num_workers)


def batch_to(batch: dict[str, torch.Tensor], device: Any) -> dict[str, torch.Tensor]:
    """Move every tensor of a batch to ``device``."""
    return {k: v.to(device) for k, v in batch.items()}
