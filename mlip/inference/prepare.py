"""A model made ready for inference by any engine: loaded or copied, cast, converted to a backend, frozen.

The ASE calculator (:mod:`mlip.calculator`), torch-sim and ML-IAP (:mod:`mlip.integrations`) all call
:func:`prepare_model`, so every engine sees the same model for the same arguments.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from mlip.errors import ConfigError
from mlip.nn.backends import BACKENDS

__all__ = ["BACKENDS", "model_elements", "prepare_model"]


def prepare_model(
    model: str | Path | torch.nn.Module, device: torch.device, dtype: torch.dtype, backend: str = "e3nn"
) -> torch.nn.Module:
    """Load (path) or copy (module) a model onto ``device``/``dtype`` in eval mode, frozen.

    A module argument is deep-copied first, so the caller's module keeps its device, dtype,
    training mode and ``requires_grad`` flags.
    """
    if isinstance(model, (str, Path)):
        from mlip.io.model_file import load_model

        loaded = load_model(model, device=device, dtype=dtype)
    elif isinstance(model, torch.nn.Module):
        loaded = copy.deepcopy(model).to(device=device, dtype=dtype)
    else:
        raise ConfigError(f"model must be a path or a torch.nn.Module, got {type(model).__name__}")
    _refresh_coupling_constants(loaded)
    loaded = _to_backend(loaded, backend)
    loaded.eval()
    for parameter in loaded.parameters():
        parameter.requires_grad_(False)
    return loaded


def _refresh_coupling_constants(model: torch.nn.Module) -> None:
    """Recompute cached Wigner-3j buffers exactly after a dtype cast (float32 -> float64 would round them)."""
    try:
        from mlip.nn.wigner import refresh_wigner_buffers
    except ImportError:  # a model that is not mlip's MACE
        return
    refresh_wigner_buffers(model)


def _to_backend(model: torch.nn.Module, backend: str) -> torch.nn.Module:
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    current = getattr(getattr(model, "hparams", None), "backend", "e3nn")
    if current == backend:
        return model
    try:
        from mlip.nn.backends.convert import convert_backend
    except ImportError as err:
        raise ConfigError(f"backend {backend!r} is not available in this installation ({err})") from None
    return convert_backend(model, backend)


def model_elements(model: torch.nn.Module) -> list[int]:
    """The atomic numbers the model knows, in its element order."""
    numbers = model.atomic_numbers
    if isinstance(numbers, torch.Tensor):
        numbers = numbers.tolist()
    return [int(z) for z in numbers]
