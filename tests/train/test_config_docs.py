"""docs/config.md documents every key of the configuration schema."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from mlip.config import Config, ModelConfig, _hints

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def _keys(cls: type, seen: set[type]) -> set[str]:
    names: set[str] = set()
    hints = _hints(cls) if cls is Config else typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        names.add(f.name)
        tp = ModelConfig if (cls is Config and f.name == "model") else hints[f.name]
        candidates = [tp, *typing.get_args(tp)]
        for arg in candidates:
            for inner in [arg, *typing.get_args(arg)]:
                if dataclasses.is_dataclass(inner) and inner not in seen:
                    seen.add(inner)
                    names |= _keys(inner, seen)
    return names


def test_every_key_is_documented():
    if not DOC.is_file():
        pytest.skip("docs/config.md missing")
    text = DOC.read_text()
    missing = sorted(k for k in _keys(Config, {Config}) if f"`{k}`" not in text)
    assert not missing, f"undocumented config keys: {missing}"
