"""Train/validation/test splits: a seeded random validation fraction, or an explicit validation file;
test files are always named separately."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlip.data.configuration import Configuration
from mlip.data.io import is_isolated_atom, read_configurations
from mlip.errors import DataError


def random_split(
    configs: Sequence[Configuration], valid_fraction: float, seed: int = 0
) -> tuple[list[Configuration], list[Configuration]]:
    """Split into (train, valid), deterministically for a given ``seed``.

    ``round(valid_fraction * n)`` frames (at least one when the fraction is > 0) go to validation,
    drawn with ``numpy.random.default_rng(seed)`` from the frames that are not isolated atoms
    (isolated-atom frames always stay in train: they define E0s). Both lists keep file order.
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise DataError(f"key 'valid_fraction': must be in [0, 1), got {valid_fraction}")
    candidates = [k for k, c in enumerate(configs) if not is_isolated_atom(c)]
    if valid_fraction == 0.0:
        return list(configs), []
    n_valid = max(1, int(round(valid_fraction * len(candidates))))
    if n_valid >= len(candidates):
        raise DataError(
            f"key 'valid_fraction': {valid_fraction} of {len(candidates)} frames leaves no training frame"
        )
    rng = np.random.default_rng(seed)
    chosen = set(rng.permutation(candidates)[:n_valid].tolist())
    train = [c for k, c in enumerate(configs) if k not in chosen]
    valid = [c for k, c in enumerate(configs) if k in chosen]
    return train, valid


def load_splits(
    train_file: str | os.PathLike | Sequence[str | os.PathLike],
    valid_file: str | os.PathLike | None = None,
    test_files: Sequence[str | os.PathLike] = (),
    valid_fraction: float = 0.1,
    seed: int = 0,
    **read_kwargs: Any,
) -> dict[str, list[Configuration]]:
    """Read the splits: ``{"train": ..., "valid": ..., "test:<file stem>": ...}``.

    With ``valid_file`` the validation set is that file (``valid_fraction`` is ignored); otherwise a
    seeded random fraction of the training file(s). ``read_kwargs`` go to
    :func:`mlip.data.io.read_configurations` (keys, head, required, ...). A test name that repeats gets
    its folder name, then a numeric suffix.
    """
    train_files = [train_file] if isinstance(train_file, (str, os.PathLike)) else list(train_file)
    train: list[Configuration] = []
    for path in train_files:
        train += read_configurations(path, **read_kwargs)
    if valid_file is not None:
        valid = read_configurations(valid_file, **read_kwargs)
    else:
        train, valid = random_split(train, valid_fraction, seed)
    splits: dict[str, list[Configuration]] = {"train": train, "valid": valid}
    for path in test_files:
        name = f"test:{Path(path).stem}"
        if name in splits:
            name = f"test:{Path(path).parent.name}/{Path(path).stem}"
        k = 2
        base = name
        while name in splits:
            name = f"{base}_{k}"
            k += 1
        splits[name] = read_configurations(path, **read_kwargs)
    return splits
