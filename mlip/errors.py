"""Typed exceptions for user errors.

Every user error raised by mlip derives from :class:`MLIPError`. Command-line entry points catch
``MLIPError`` (see :func:`mlip.cli.common.run_cli`), print its one-line message to stderr and exit with
status 2, without a traceback. Messages name the file, the frame index and the key where they apply.
"""

from __future__ import annotations


class MLIPError(Exception):
    """Base class of all user-facing errors: one clear line, no traceback at the CLI."""


class DataError(MLIPError):
    """Bad input data: missing/NaN labels, wrong shapes, unknown elements, empty files, ..."""


class ConfigError(MLIPError):
    """Bad configuration: unknown key, wrong type, missing file."""


class ModelFileError(MLIPError):
    """A model or checkpoint file that cannot be read safely."""


def frame_error(path: str, index: int | None, key: str | None, what: str) -> DataError:
    """Build a :class:`DataError` whose message names file, frame and key.

    >>> str(frame_error("a.xyz", 3, "energy", "missing"))
    "a.xyz: frame 3: key 'energy': missing"
    """
    parts = [str(path)]
    if index is not None:
        parts.append(f"frame {index}")
    if key is not None:
        parts.append(f"key '{key}'")
    parts.append(what)
    return DataError(": ".join(parts))
