"""Fixtures of the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_support import make_acac_small


@pytest.fixture
def acac_small(tmp_path: Path) -> dict[str, Path]:
    """24 training and 8 test frames of the bundled acac slice, plus isolated atoms."""
    return make_acac_small(tmp_path)
