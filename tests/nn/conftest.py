"""Shared fixtures of the model tests: converted mace-torch parity models (cached per session)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from graphs import FIXTURES  # noqa: E402

_CACHE: dict = {}


@pytest.fixture(scope="session")
def converted():
    """``converted(variant)`` -> float64 mlip model converted from the bundled mace-torch fixture."""
    from mlip.io.mace import convert_mace_files

    def get(variant: str):
        if variant not in _CACHE:
            d = FIXTURES / variant
            _CACHE[variant] = convert_mace_files(d / "hyperparameters.json", d / "state_dict.npz")
        return _CACHE[variant]

    return get
