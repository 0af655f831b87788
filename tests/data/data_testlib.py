"""Small configurations built by hand for the data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlip.data.configuration import Configuration

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
SHARED = REPO / ".." / "shared"


def random_configuration(seed: int, n: int, periodic: bool = True, head: str = "Default",
                         numbers=(1, 6, 8), with_stress: bool | None = None) -> Configuration:
    rng = np.random.default_rng(seed)
    cell = np.diag(rng.uniform(5.0, 6.0, 3)) if periodic else np.zeros((3, 3))
    # Jittered grid: atoms at least ~1 A apart.
    grid = np.array(np.meshgrid(*[np.arange(3)] * 3, indexing="ij")).reshape(3, -1).T[:n]
    positions = grid * 1.6 + rng.uniform(-0.2, 0.2, (n, 3)) + 0.5
    with_stress = periodic if with_stress is None else with_stress
    return Configuration(
        numbers=rng.choice(numbers, n), positions=positions, cell=cell, pbc=[periodic] * 3,
        energy=float(rng.normal()), forces=rng.normal(size=(n, 3)),
        stress=rng.normal(size=(3, 3)) if with_stress else None, head=head,
        source=f"test:{seed}",
    )
