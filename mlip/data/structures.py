"""Structures (ASE ``Atoms`` or :class:`Configuration`) -> graph dicts -> batches: the one loop.

Used by the predict-over-frames engine (:mod:`mlip.inference.frames`), which evaluation, uncertainty,
descriptors and edge energies all run through, and by training's data set-up. Graphs are built one chunk at a time, so memory holds one batch of
graphs. The ASE calculator builds its one-structure batch itself, from its skin neighbour list.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from mlip.data.batch import collate
from mlip.data.configuration import Configuration
from mlip.data.graph import configuration_to_graph

__all__ = ["as_configuration", "structure_batches", "structures_to_graphs"]


def as_configuration(structure: Any, head: str | None = None) -> Configuration:
    """A :class:`Configuration` from an ``Atoms`` (labels dropped) or a Configuration (copied); ``head`` set."""
    if isinstance(structure, Configuration):
        config = dataclasses.replace(structure)
    else:
        config = Configuration(
            numbers=np.asarray(structure.numbers),
            positions=np.asarray(structure.positions),
            cell=np.asarray(structure.cell),
            pbc=np.asarray(structure.pbc),
        )
    if head is not None:
        config.head = head
    return config


def structures_to_graphs(
    structures: Sequence[Any], r_max: float, heads: Sequence[str], head: str | None = None
) -> list[dict[str, np.ndarray]]:
    """Graph dicts (:func:`mlip.data.graph.configuration_to_graph`, cutoff ``r_max`` in A) of ``structures``.

    Configurations keep their labels and head unless ``head`` is given; ``Atoms`` become unlabelled
    configurations of ``head`` (default ``"Default"``). Choosing a head for a model is not done here: the
    engine (:mod:`mlip.inference.frames`) resolves every frame's head by :mod:`mlip.nn.heads` first.
    """
    heads = list(heads)
    out = []
    for s in structures:
        if isinstance(s, Configuration) and head is None:
            config = s
        else:
            config = as_configuration(s, head)
        out.append(configuration_to_graph(config, float(r_max), heads))
    return out


def structure_batches(
    structures: Iterable[Any],
    r_max: float,
    heads: Sequence[str],
    batch_size: int,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    head: str | None = None,
) -> Iterator[tuple[int, Sequence[Any], dict[str, torch.Tensor]]]:
    """``(start, chunk, batch)`` for consecutive chunks of ``batch_size`` structures, in order.

    ``structures`` may be any iterable (read lazily: memory holds one chunk). ``chunk`` is the list of
    the chunk's structures, ``start`` the index of its first one, and ``batch`` the
    :func:`mlip.data.batch.collate` of its graphs (floats in ``dtype``, energy labels float64) moved
    to ``device``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    it = iter(structures)
    start = 0
    while chunk := list(itertools.islice(it, batch_size)):
        batch = collate(structures_to_graphs(chunk, r_max, heads, head), dtype)
        if device is not None:
            batch = {k: v.to(device) for k, v in batch.items()}
        yield start, chunk, batch
        start += len(chunk)
