"""Choosing the output head of a multi-head model: the one rule, for every command, engine and API.

Every place that runs a model on structures picks heads here:

* :func:`select_head` -- one head for a whole run (``--head``, the calculator's ``head=``, LAMMPS, torch-sim).
* :func:`frame_head` -- the head of one frame that may carry its own (an extended-XYZ ``head`` key).
* :func:`model_heads` -- a model's heads and ``default_head`` (written by fine-tuning into the model file).

The rule: an explicit head wins (and must be one of the model's heads). Without one, a frame's own head is
used when the model has it; otherwise the model's ``default_head`` when it is a head, else the only head,
else a head named ``"Default"``; else the choice is ambiguous and an error asks for one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlip.errors import ConfigError

__all__ = ["frame_head", "model_heads", "select_head", "UNNAMED_HEAD"]

UNNAMED_HEAD = "Default"
"""The head of a frame or dataset that names none (mace-torch's name for it)."""


def model_heads(model: Any) -> tuple[list[str], str | None]:
    """``(heads, default_head)`` of a model (or anything with ``heads``/``default_head`` attributes).

    A module without ``heads`` counts as one head named ``"Default"``; ``default_head`` is ``None`` unless
    the model file set it (fine-tuned models).
    """
    heads = [str(h) for h in getattr(model, "heads", [UNNAMED_HEAD])]
    default = getattr(model, "default_head", None)
    return heads, (str(default) if default is not None else None)


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
        if UNNAMED_HEAD in heads:
            return heads.index(UNNAMED_HEAD)
        raise ConfigError(f"{key}: {owner} has several heads {heads} and no default_head; choose one with {key}")
    if head not in heads:
        raise ConfigError(f"{key}: unknown head {head!r}; {owner}'s heads are {heads}")
    return heads.index(head)


def frame_head(
    heads: Sequence[str],
    own: str | None,
    head: str | None = None,
    default: str | None = None,
    key: str = "--head",
    where: str = "frame",
) -> str:
    """The head name to run one frame with.

    Args:
        heads: the model's heads.
        own: the frame's own head (``None``, or ``"Default"`` for a frame that names none).
        head: an explicit head for every frame (``--head``); checked against ``heads``.
        default: the model's ``default_head``.
        key: the setting that chooses a head, for messages.
        where: the frame as the user knows it (``"data/x.xyz: frame 3"``), for messages.

    A frame's own head is used when the model has it. A frame naming no head (``None``/``"Default"``)
    that the model lacks gets the model's default (:func:`select_head`). A frame naming another head the
    model lacks is an error: it asks for ``key``.
    """
    heads = list(heads)
    if head is not None:
        return heads[select_head(heads, head, default, key=key)]
    if own is not None and own in heads:
        return own
    if own is None or own == UNNAMED_HEAD:
        return heads[select_head(heads, None, default, key=f"{where}: {key}")]
    raise ConfigError(f"{where}: head {own!r} is not one of the model's heads {heads}; pass {key}")
