"""Backend conversion of a built model and the cross-backend check (pure nn: no file I/O).

Both backends (:mod:`mlip.nn.backends`) have the same parameters under the same names, so

* :func:`convert_backend` rebuilds the model with the other backend, loads the same state dict
  (lossless by construction) and then checks itself: both models are evaluated on a small built-in
  periodic structure (:func:`check_structure_batch`) and a disagreement raises
  :class:`~mlip.errors.ModelFileError`;
* :func:`verify_backends_agree` / :func:`compare_models` are that check on their own.

Converting a model *file* is :func:`mlip.io.model_file.convert_model_file`.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from mlip.data import keys
from mlip.device import model_device, model_dtype
from mlip.errors import ConfigError, ModelFileError
from mlip.nn.backends import BACKENDS
from mlip.nn.model import build_model
from mlip.nn.wigner import refresh_wigner_buffers

__all__ = ["CHECK_RTOL", "check_structure_batch", "compare_models", "convert_backend", "verify_backends_agree"]

# tolerances of the self-check, relative to the largest magnitude of each output
CHECK_RTOL = {torch.float64: 1e-10, torch.float32: 2e-4}


def check_structure_batch(model: torch.nn.Module, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    """A small built-in test batch: a distorted periodic cell (3.1 A) with one atom of every element
    of the model (cycled to at least 4 atoms), all pairs within the cutoff found by brute force."""
    zs = [int(z) for z in model.atomic_numbers]
    n = max(4, len(zs))
    numbers = np.array([zs[i % len(zs)] for i in range(n)], dtype=np.int64)
    rng = np.random.default_rng(7)
    side = 3.1 * max(1.0, (n / 4) ** (1 / 3))
    cell = np.diag([side, side * 1.05, side * 0.97]) + 0.1 * rng.standard_normal((3, 3))
    frac = (np.arange(n)[:, None] * np.array([0.37, 0.61, 0.23]) + rng.uniform(0, 0.1, (n, 3))) % 1.0
    positions = frac @ cell
    r_max = float(model.r_max)
    inv = np.linalg.inv(cell)
    reps = [int(np.ceil(r_max * np.linalg.norm(inv[:, k]))) + 1 for k in range(3)]
    senders, receivers, shifts = [], [], []
    for a in range(-reps[0], reps[0] + 1):
        for b in range(-reps[1], reps[1] + 1):
            for c in range(-reps[2], reps[2] + 1):
                S = np.array([a, b, c], dtype=np.float64)
                d = positions[None, :, :] - positions[:, None, :] + S @ cell  # [s, r]
                mask = np.linalg.norm(d, axis=-1) < r_max
                if a == b == c == 0:
                    mask &= ~np.eye(n, dtype=bool)
                s, r = np.nonzero(mask)
                senders.append(s)
                receivers.append(r)
                shifts.append(np.repeat(S[None], len(s), axis=0))
    kw = {"device": device}
    return {
        keys.POSITIONS: torch.tensor(positions, dtype=dtype, **kw),
        keys.NUMBERS: torch.tensor(numbers, **kw),
        keys.BATCH: torch.zeros(n, dtype=torch.long, **kw),
        keys.PTR: torch.tensor([0, n], **kw),
        keys.EDGE_INDEX: torch.tensor(np.stack([np.concatenate(senders), np.concatenate(receivers)]), **kw),
        keys.UNIT_SHIFTS: torch.tensor(np.concatenate(shifts), dtype=dtype, **kw),
        keys.CELL: torch.tensor(cell, dtype=dtype, **kw).reshape(1, 3, 3),
        keys.PBC: torch.ones(1, 3, dtype=torch.bool, **kw),
        keys.HEAD: torch.zeros(1, dtype=torch.long, **kw),
    }


def compare_models(reference: torch.nn.Module, candidate: torch.nn.Module) -> float:
    """Largest relative difference of energy, forces and stress over every head on the built-in structure."""
    dtype, device = model_dtype(reference), model_device(reference)
    batch = check_structure_batch(reference, dtype, device)
    worst = 0.0
    for h in range(len(reference.heads)):
        batch[keys.HEAD] = torch.full((1,), h, dtype=torch.long, device=device)
        a = reference(batch, compute_forces=True, compute_stress=True)
        b = candidate(batch, compute_forces=True, compute_stress=True)
        for key in (keys.ENERGY, keys.FORCES, keys.STRESS):
            ak, bk = a[key].detach(), b[key].detach()
            scale = max(float(ak.abs().max()), 1e-3)
            diff = float((ak - bk).abs().max())
            if not np.isfinite(diff):
                return float("inf")
            worst = max(worst, diff / scale)
    return worst


def convert_backend(model: torch.nn.Module, backend: str, check: bool = True) -> torch.nn.Module:
    """The same model evaluated by ``backend`` (``"e3nn"`` | ``"cueq"``); ``model`` is not modified.

    The parameters are copied unchanged (both backends store them in the e3nn layout). With
    ``check`` both models are evaluated on :func:`check_structure_batch`; a relative difference above
    ``CHECK_RTOL`` (1e-10 in float64, 2e-4 in float32) raises :class:`ModelFileError`.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    dtype, device = model_dtype(model), model_device(model)
    hp = copy.deepcopy(model.hparams)
    hp.backend = backend
    new = build_model(hp, dtype=torch.float64)
    state = model.state_dict()
    target = new.state_dict()
    # e3nn's generated code may carry extra constants after a deepcopy (``_compiled_main*._tensor_constant*``);
    # they are rebuilt by e3nn, everything else must match exactly
    missing = sorted(set(target) - set(state))
    unexpected = sorted(k for k in set(state) - set(target) if "._compiled_main" not in k)
    bad_shape = sorted(k for k in target if k in state and state[k].shape != target[k].shape)
    if missing or unexpected or bad_shape:
        first = (missing + unexpected + bad_shape)[0]
        raise ModelFileError(f"backend conversion to {backend}: parameters do not match (e.g. '{first}')")
    new.load_state_dict({k: state[k] for k in target}, strict=True)
    new.to(device=device, dtype=dtype)
    refresh_wigner_buffers(new)
    new.train(model.training)
    if check:
        verify_backends_agree(model, new, what=f"conversion {getattr(model.hparams, 'backend', 'e3nn')} -> {backend}")
    return new


def verify_backends_agree(reference: torch.nn.Module, candidate: torch.nn.Module, what: str = "backend check") -> float:
    """Raise :class:`ModelFileError` unless both models agree on the built-in structure; returns the difference."""
    with torch.enable_grad():
        diff = compare_models(reference, candidate)
    tol = CHECK_RTOL.get(model_dtype(reference), 2e-4)
    if not diff <= tol:
        raise ModelFileError(
            f"{what}: the two backends disagree on the check structure (relative difference {diff:.2e} > {tol:.0e}); "
            "refusing to use the converted model"
        )
    return diff
