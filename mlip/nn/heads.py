"""Choosing one output head of a multi-head model: the one rule, for the calculator, engines and fine-tuning."""

from __future__ import annotations

from collections.abc import Sequence

from mlip.errors import ConfigError

__all__ = ["select_head"]


def select_head(
    heads: Sequence[str],
    head: str | None,
    default: str | None = None,
    key: str = "head",
    owner: str = "the model",
) -> int:
    """Index of ``head`` in ``heads``.

    ``None`` picks ``default`` (a model file's ``default_head``, written by fine-tuning) when it is a
    head, else the only head, else ``"Default"``. Errors are :class:`ConfigError` naming ``key`` (the
    setting as the user wrote it) and ``owner`` (whose heads they are).
    """
    heads = list(heads)
    if head is None:
        if default in heads:
            return heads.index(default)
        if len(heads) == 1:
            return 0
        if "Default" in heads:
            return heads.index("Default")
        raise ConfigError(f"{key}: {owner} has several heads {heads}; choose one")
    if head not in heads:
        raise ConfigError(f"{key}: unknown head {head!r}; {owner}'s heads are {heads}")
    return heads.index(head)
