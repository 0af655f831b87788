"""Fixtures of the calculator tests: a Morse pair stand-in and a small randomly initialised MACE model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calc_support import MorsePairModel, small_mace  # noqa: E402


@pytest.fixture
def pair_model() -> MorsePairModel:
    return MorsePairModel()


@pytest.fixture(scope="module")
def mace_model() -> torch.nn.Module:
    return small_mace()
