"""Model files: tensors plus a JSON description, loaded without unpickling any class.

Layout (one ``torch.save`` of plain containers)::

    {"mlip_model": <JSON string>, "state_dict": {name: tensor}}

The JSON holds ``format``, ``format_version``, ``mlip_version``, ``hparams`` (``ModelHyperparameters``),
``atomic_numbers``, ``heads``, ``r_max``, ``dtype`` and user ``metadata``. Loading uses
``torch.load(weights_only=True)``, rebuilds the model from the hyper-parameters and loads the tensors
strictly. Writes are atomic (temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

import mlip
from mlip.device import DTYPES, dtype_name
from mlip.errors import ModelFileError
from mlip.io.file_kind import describe_bad_model_file, describe_payload
from mlip.files import atomic_path
from mlip.nn.backends.convert import convert_backend, verify_backends_agree
from mlip.nn.hparams import ModelHyperparameters
from mlip.nn.model import MACE, build_model
from mlip.nn.wigner import refresh_wigner_buffers

FORMAT = "mlip-model"
FORMAT_VERSION = 1


def _dtype_name(model: torch.nn.Module) -> str:
    for p in model.parameters():
        return dtype_name(p.dtype)
    return "float64"


def _portable_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop e3nn's derived fx constants (``..._tensor_constantN``).

    e3nn's code-generated tensor products may register extra constant buffers when a module is
    deep-copied or traced; they are rebuilt from the irreps at construction, so they are not part of a
    model's state, and keeping them would make a copy's file unloadable (strict key matching).
    """
    return {k: v for k, v in state.items() if "._tensor_constant" not in k}


def _load_state(model: MACE, state: dict[str, torch.Tensor]) -> None:
    """``load_state_dict`` that is strict about every key except e3nn's derived fx constants."""
    expected = set(_portable_state(model.state_dict()))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise KeyError(f"missing keys {missing[:3]}, unexpected keys {unexpected[:3]}")
    model.load_state_dict(state, strict=False)


def save_model(model: MACE, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
    """Write ``model`` to ``path`` atomically (tensors moved to CPU)."""
    path = Path(path)
    info = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mlip_version": mlip.__version__,
        "hparams": model.hparams.to_dict(),
        "atomic_numbers": list(model.atomic_numbers),
        "heads": list(model.heads),
        "r_max": float(model.r_max),
        "dtype": _dtype_name(model),
        "metadata": metadata or {},
    }
    try:
        text = json.dumps(info)
    except TypeError as err:
        raise ModelFileError(f"{path}: metadata is not JSON-serialisable: {err}") from None
    state = {k: v.detach().cpu().clone() for k, v in _portable_state(model.state_dict()).items()}
    with atomic_path(path) as tmp:
        torch.save({"mlip_model": text, "state_dict": state}, tmp)


def read_model_info(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The JSON description and the tensors of a model file (no model is built)."""
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path}: {describe_bad_model_file(path)}")
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt file, pickle with classes, ... (weights_only refuses them)
        raise ModelFileError(f"{path}: {describe_bad_model_file(path, err)}") from None  # what it is, what to pass
    if not isinstance(payload, dict) or "mlip_model" not in payload or "state_dict" not in payload:
        kind = describe_payload(payload) or "not an mlip model file (missing 'mlip_model'/'state_dict')"
        raise ModelFileError(f"{path}: {kind}")
    try:
        info = json.loads(payload["mlip_model"])
    except (TypeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{path}: corrupt model description: {err}") from None
    if info.get("format") != FORMAT:
        raise ModelFileError(f"{path}: unknown format {info.get('format')!r}")
    if int(info.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelFileError(f"{path}: format version {info.get('format_version')} is newer than this mlip supports")
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{path}: corrupt state dict")
    return info, state


def load_model(path: str | Path, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> MACE:
    """Load a model saved by :func:`save_model`; ``dtype`` defaults to the stored one."""
    info, state = read_model_info(path)
    try:
        hp = ModelHyperparameters.from_dict(info["hparams"])
    except (KeyError, TypeError) as err:
        raise ModelFileError(f"{path}: bad hyper-parameters: {err}") from None
    stored = DTYPES.get(info.get("dtype", "float64"), torch.float64)
    try:
        model = build_model(hp, dtype=torch.float64)
        _load_state(model, _portable_state(state))
    except (RuntimeError, ValueError, KeyError, NotImplementedError) as err:
        first = str(err).strip().splitlines()[0]
        raise ModelFileError(f"{path}: tensors do not match the hyper-parameters ({first})") from None
    model.to(dtype=dtype or stored)
    refresh_wigner_buffers(model)
    if device is not None:
        model.to(device)
    model.eval()
    model.default_head = (info.get("metadata") or {}).get("default_head")  # head used when none is asked for
    return model


def convert_model_file(path_in: str | Path, path_out: str | Path, backend: str) -> float:
    """Load ``path_in``, convert it to ``backend``, verify it, write ``path_out`` atomically.

    Returns the measured relative difference (:func:`mlip.nn.backends.convert.verify_backends_agree`).
    Nothing is written when the check fails. The metadata gains ``backend_converted_from``.
    """
    info, _ = read_model_info(path_in)
    model = load_model(path_in)
    new = convert_backend(model, backend, check=False)
    diff = verify_backends_agree(model, new, what=f"{path_in}: conversion to {backend}")
    metadata = dict(info.get("metadata") or {})
    metadata["backend_converted_from"] = str(path_in)
    save_model(new, path_out, metadata=metadata)
    return diff
