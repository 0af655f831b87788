"""Numeric backends of the model: ``e3nn`` (reference) and ``cueq`` (cuEquivariance, :mod:`.cueq`).

``hparams.backend`` selects one at construction (``MACE.__init__`` calls :func:`apply_backend`).
Both backends have the same parameters under the same names, so a model file written by either
backend loads into the other after changing ``backend`` only. Converting a built model and the
cross-backend check live in :mod:`mlip.nn.backends.convert` (no file I/O); converting a model *file*
is :func:`mlip.io.model_file.convert_model_file`.
"""

from __future__ import annotations

import torch

from mlip.errors import ConfigError

BACKENDS = ("e3nn", "cueq")


def apply_backend(model: torch.nn.Module, backend: str) -> torch.nn.Module:
    """Swap the modules of a freshly built e3nn model for ``backend`` (in place)."""
    if backend == "e3nn":
        return model
    if backend == "cueq":
        try:
            from mlip.nn.backends.cueq import apply_cueq
        except ImportError as err:  # cuequivariance(-torch) missing
            raise ConfigError(f"model hyper-parameter 'backend': cueq needs cuequivariance-torch ({err})") from None
        return apply_cueq(model)
    raise ConfigError(f"model hyper-parameter 'backend': {backend!r} is not one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "apply_backend"]
