"""Devices, floating-point dtypes and seeding: the one place that turns user strings into torch objects.

Layer 1 (with :mod:`mlip.errors`): imports nothing from mlip but the errors, so every other layer may use it.

* :func:`resolve_device` -- ``"auto"`` | ``"cpu"`` | ``"cuda"`` | ``"cuda:N"`` -> :class:`torch.device`;
  asking for CUDA where there is none is a :class:`~mlip.errors.ConfigError` naming the key the user set.
* :data:`DTYPES`, :func:`resolve_dtype`, :func:`dtype_name` -- ``"float32"``/``"float64"`` <-> torch dtype.
* :func:`model_dtype`, :func:`model_device` -- the float dtype and the device a model computes in (the one
  probe: every engine, backend converter and uncertainty evaluator asks here).
* :func:`seed_everything` -- python, numpy and torch generators.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from mlip.errors import ConfigError

__all__ = ["DEFAULT_DEVICE_KEY", "DTYPES", "dtype_name", "model_device", "model_dtype", "resolve_device", "resolve_dtype",
           "seed_everything"]

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}
"""The floating-point dtypes a model or a run may use, by the name used in configs, CLIs and model files."""

DEFAULT_DEVICE_KEY = "config key 'device'"
"""How errors name the device setting when the caller does not say (the training config's key)."""


def resolve_device(name: str | torch.device | None = "auto", key: str = DEFAULT_DEVICE_KEY) -> torch.device:
    """``auto`` (or ``None``) -> cuda when available, else cpu; ``cpu``, ``cuda``, ``cuda:N`` as given.

    ``key`` names the setting in error messages as the user wrote it (e.g. ``"--device"``). A device
    string torch cannot parse, or CUDA requested without a CUDA device, raises :class:`ConfigError`.
    """
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"{key}: {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}: cuda requested but no CUDA device is available")
    return device


def resolve_dtype(name: str | torch.dtype, key: str = "config key 'dtype'") -> torch.dtype:
    """``"float32"`` / ``"float64"`` (or such a torch dtype) -> torch dtype; anything else is a ConfigError."""
    if isinstance(name, torch.dtype) and name in DTYPES.values():
        return name
    if isinstance(name, str) and name in DTYPES:
        return DTYPES[name]
    raise ConfigError(f"{key}: unknown dtype {name!r}; choose one of {list(DTYPES)}")


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"`` (the inverse of :data:`DTYPES`, for any torch dtype)."""
    return str(dtype).replace("torch.", "")


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The float dtype ``model`` computes in.

    A model's own ``dtype`` attribute wins (``MACE.dtype``: its E0s, scale and shift stay float64 whatever
    the features' dtype); else the first floating-point parameter's dtype; else float64.
    """
    dtype = getattr(model, "dtype", None)
    if isinstance(dtype, torch.dtype):
        return dtype
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float64


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); CPU for a module holding neither."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (the only global state a run touches)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
