"""Fixtures of the train/eval CLI tests (helpers shared with tests/train)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

from train_support import make_acac_small  # noqa: E402


@pytest.fixture
def acac_small(tmp_path: Path) -> dict[str, Path]:
    return make_acac_small(tmp_path)
