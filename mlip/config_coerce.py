"""Type checking and coercion of config sections: dataclass schema + YAML values -> typed values.

Every error is one :class:`ConfigError` line naming the dotted key as the user wrote it, with a near-miss
suggestion for unknown keys and choices. Used by :mod:`mlip.config`; knows nothing of the schema itself.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, Union

from mlip.errors import ConfigError

_HINTS: dict[type, dict[str, Any]] = {}


def register_hints(cls: type, hints: dict[str, Any]) -> None:
    """Use ``hints`` as the field types of ``cls`` (for fields whose annotation is built at run time)."""
    _HINTS[cls] = hints


def hints_of(cls: type) -> dict[str, Any]:
    """Field name -> type of the dataclass ``cls`` (cached)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"mapping of {type_name(typing.get_args(tp)[1])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def suggest(name: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def coerce(value: Any, tp: Any, path: str, is_file: bool = False) -> Any:
    """Check ``value`` against the type ``tp`` and return the converted value; raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"config key '{path}': must not be null (expected {type_name(tp)})")
        # a single file given where a list is expected: accept and wrap
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, path, is_file)
            except ConfigError as err:
                errors.append(err)
        if len(errors) == 1 or all("expected" in str(e) and "unknown" not in str(e) for e in errors):
            raise ConfigError(
                f"config key '{path}': expected {type_name(tp)}, got {type(value).__name__} {value!r}"
            ) if len(errors) > 1 else errors[0]
        # an inner structural error (e.g. unknown nested key) is more useful than a type summary
        raise next(e for e in errors if "expected" not in str(e) or "unknown" in str(e))
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            hint = suggest(str(value), [str(c) for c in choices])
            raise ConfigError(
                f"config key '{path}': {value!r} is not one of {', '.join(map(repr, choices))}{hint}"
            )
        return value
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and is_file:
            value = [value]
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"config key '{path}': expected {type_name(tp)}, got {type(value).__name__} {value!r}")
        return [coerce(v, item, f"{path}[{i}]", is_file) for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}': expected {type_name(tp)}, got {type(value).__name__} {value!r}")
        return {str(k): coerce(v, item, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}': expected a mapping, got {type(value).__name__} {value!r}")
        return build_section(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{path}': expected true/false, got {type(value).__name__} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"config key '{path}': expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                try:
                    return float(value)  # YAML 1.1 reads "1e-3" as a string
                except ValueError:
                    pass
            raise ConfigError(f"config key '{path}': expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{path}': expected a string, got {type(value).__name__} {value!r}")
        if is_file and not Path(value).is_file():
            raise ConfigError(f"config key '{path}': file not found: {value}")
        return value
    if tp is Any:
        return value
    raise ConfigError(f"config key '{path}': unsupported type {tp!r}")  # pragma: no cover


def build_section(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build the dataclass ``cls`` from ``data``; unknown keys are refused with a near-miss suggestion."""
    hints = hints_of(cls)
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in known:
            raise ConfigError(f"unknown config key '{path}'{suggest(str(key), known)}")
        f = known[key]
        kwargs[key] = coerce(value, hints[key], path, bool(f.metadata.get("file")))
    return cls(**kwargs)
