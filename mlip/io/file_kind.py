"""What a file that is not a readable mlip model file actually is, in one phrase, and what to pass instead.

:func:`describe_bad_model_file` looks at the first bytes (never unpickles anything) and, when the file
did load as plain tensors, at its keys. Used by :mod:`mlip.io.model_file` to turn ``torch.load``'s
errors (``PytorchStreamReader failed ... (101)``, ``[Errno 22]``, ``EOFError``) into one line.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

PASS_MODEL = "pass the model.pt that mlip-train writes in its output_dir"

_CHECKPOINT_KEYS = {"optimizer", "scheduler", "rng", "best_state"}


def truncated_zip(size: int) -> str:
    """The phrase for a PyTorch (zip) file whose zip directory is missing: what a cut-short copy looks like."""
    return (f"a truncated or damaged PyTorch file ({size} bytes, its zip directory is missing: an interrupted "
            "copy or a full disk)")


def describe_payload(payload: Any) -> str | None:
    """A phrase for a loaded object that is not a model file (a training checkpoint, a bare state dict),
    or None when it is not recognised."""
    if isinstance(payload, dict):
        if _CHECKPOINT_KEYS & set(payload) and "model" in payload:
            return (f"a training checkpoint (epoch {payload.get('epoch', '?')}), not an mlip model file; {PASS_MODEL} "
                    "(model.pt beside checkpoints/), or continue training with mlip-train --resume")
        if payload and all(hasattr(v, "shape") for v in payload.values()):
            return (f"a bare state dict ({len(payload)} tensors, no hyper-parameters), not an mlip model file; "
                    f"{PASS_MODEL}")
    return None


def _text_kind(head: bytes) -> str | None:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    first = text.strip().splitlines()[0] if text.strip() else ""
    if first.isdigit():
        return "a structure file (XYZ: first line is an atom count), not a model; pass it as --data"
    if first.startswith(("{", "[")):
        return "a JSON/text file, not a model"
    return f"a text file (starting {first[:30]!r}), not a model"


def describe_bad_model_file(path: str | Path, err: BaseException | None = None) -> str:
    """One phrase: what ``path`` is and what to pass instead (``err``: the loader's exception, if any)."""
    p = Path(path)
    if p.is_dir():
        return f"a directory, not a model file; {PASS_MODEL} (e.g. {p / 'model.pt'})"
    size = p.stat().st_size
    if size == 0:
        return f"an empty file (0 bytes: an interrupted write or copy); {PASS_MODEL}"
    with open(p, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(p) as zf:
                bad = zf.testzip()
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, EOFError):
            return f"{truncated_zip(size)}; copy it again or {PASS_MODEL}"
        if bad is not None:
            return f"a damaged PyTorch file (entry {bad} fails its checksum); copy it again or {PASS_MODEL}"
        if any(n.endswith(".pkl") for n in names) and err is not None and "weights_only" in str(err).lower():
            return ("a pickled PyTorch object with code references (e.g. a mace-torch .model), which mlip never "
                    "unpickles; convert a mace-torch model with mlip-convert from-mace FILE -o model.pt")
        return f"a PyTorch file that is not an mlip model; {PASS_MODEL}"
    if head[:1] == b"\x80":  # pickle protocol 2+ (torch's legacy format starts with a pickle)
        return (f"a pickle / legacy PyTorch file ({size} bytes), which mlip does not unpickle; {PASS_MODEL} "
                "(mace-torch .model files: mlip-convert from-mace FILE -o model.pt)")
    text = _text_kind(head)
    if text is not None:
        return f"{text}; {PASS_MODEL}" if "--data" not in text else text
    return f"not a model file (unknown binary content, {size} bytes); {PASS_MODEL}"
