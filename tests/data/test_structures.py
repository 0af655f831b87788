"""mlip.data.structures: structures -> graphs -> batches in order, with heads and devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from mlip.data.configuration import Configuration
from mlip.data.structures import as_configuration, structure_batches, structures_to_graphs
from mlip.errors import DataError


def _configs(n):
    rng = np.random.default_rng(0)
    return [Configuration(numbers=np.array([1, 8] + [1] * (i % 2)), positions=rng.uniform(0, 2, (2 + i % 2, 3)),
                          energy=float(-i), head="B") for i in range(n)]


def test_chunks_in_order_and_labels_kept():
    configs = _configs(5)
    chunks = list(structure_batches(configs, 3.0, ["A", "B"], batch_size=2, dtype=torch.float32))
    assert [start for start, _, _ in chunks] == [0, 2, 4]
    assert [len(chunk) for _, chunk, _ in chunks] == [2, 2, 1]
    start, chunk, batch = chunks[1]
    assert chunk == configs[2:4]
    assert batch["positions"].dtype == torch.float32 and batch["energy"].dtype == torch.float64
    assert batch["energy"].tolist() == [-2.0, -3.0] and batch["head"].tolist() == [1, 1]
    assert batch["ptr"].tolist() == [0, 2, 5]
    np.testing.assert_allclose(batch["positions"][2:].numpy(), configs[3].positions, rtol=1e-6)


def test_head_override_and_atoms():
    atoms = Atoms("H2O", positions=[[0, 0, 0], [0.9, 0, 0], [0, 0.9, 0]])
    graphs = structures_to_graphs([atoms, _configs(1)[0]], 3.0, ["A", "B"], head="A")
    assert [int(g["head"]) for g in graphs] == [0, 0]
    assert not bool(graphs[0]["has_energy"]) and bool(graphs[1]["has_energy"])
    assert int(structures_to_graphs([atoms], 3.0, ["B", "Default"])[0]["head"]) == 1  # Atoms: the unnamed head
    with pytest.raises(DataError, match="unknown head 'Default'"):  # no head rule here: that is mlip.nn.heads'
        structures_to_graphs([atoms], 3.0, ["A", "B"])
    c = as_configuration(atoms, "B")
    assert c.head == "B" and c.energy is None and c.numbers.tolist() == [1, 1, 8]


def test_any_iterable_is_read_one_chunk_at_a_time():
    configs = _configs(5)
    pulled = []

    def stream():
        for c in configs:
            pulled.append(c)
            yield c

    batches = structure_batches(stream(), 3.0, ["A", "B"], batch_size=2)
    start, chunk, batch = next(batches)
    assert (start, chunk, len(pulled)) == (0, configs[:2], 2)
    assert [s for s, _, _ in batches] == [2, 4] and len(pulled) == 5
