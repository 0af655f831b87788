"""Shared pieces of the cuEquivariance backend (:mod:`mlip.nn.backends.cueq`): the lazy import, irreps
conversion, exact path scales, and the wrapper base class that keeps cuEquivariance modules out of the
module tree. See :mod:`mlip.nn.backends.cueq` for the design."""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable

import numpy as np
import torch
from e3nn import o3

from mlip.errors import ConfigError

SCALE_RESIDUAL = 1e-12
_NAIVE_CACHE: dict[tuple, torch.nn.Module] = {}
BASIS_RESIDUAL = 1e-10


def _cue():
    try:
        import cuequivariance as cue
        import cuequivariance_torch as cuet
    except ImportError:
        raise ConfigError("model backend 'cueq' needs cuEquivariance, which is not installed: "
                          "pip install -e '.[cueq]' in the mlip clone (fused GPU kernels: '.[cuda]')") from None
    return cue, cuet


def cuda_kernels_available() -> bool:
    """True when CUDA and ``cuequivariance_ops_torch`` (the fused kernels) are both present."""
    return torch.cuda.is_available() and importlib.util.find_spec("cuequivariance_ops_torch") is not None


def cue_irreps(irreps: o3.Irreps | str):
    """e3nn irreps -> ``cue.Irreps("O3", ...)`` (same order, multiplicities and parities)."""
    cue, _ = _cue()
    irreps = o3.Irreps(irreps)
    return cue.Irreps("O3", "+".join(f"{mul}x{ir}" for mul, ir in irreps) if len(irreps) else "0x0e")


def _float64_reference(module: torch.nn.Module) -> torch.nn.Module:
    """A float64 CPU copy of an e3nn module with exact Wigner-3j buffers."""
    from mlip.nn.wigner import refresh_wigner_buffers

    ref = copy.deepcopy(module).to(device="cpu", dtype=torch.float64)
    refresh_wigner_buffers(ref)
    return ref


def _path_scales(
    e3nn_fn: Callable[[torch.Tensor], torch.Tensor],
    cue_fn: Callable[[torch.Tensor], torch.Tensor],
    slices: list[slice],
    numel: int,
    what: str,
) -> torch.Tensor:
    """Per-weight factors ``s`` with ``cue_fn(s * w) == e3nn_fn(w)`` path by path (float64)."""
    gen = torch.Generator().manual_seed(1234)
    scale = torch.ones(numel, dtype=torch.float64)
    for sl in slices:
        w = torch.zeros(numel, dtype=torch.float64)
        w[sl] = torch.randn(sl.stop - sl.start, generator=gen, dtype=torch.float64)
        y_e, y_c = e3nn_fn(w).flatten(), cue_fn(w).flatten()
        denom = float(y_c @ y_c)
        if denom == 0.0:
            if float(y_e.abs().max()) != 0.0:
                raise RuntimeError(f"{what}: a path that cuEquivariance does not produce")
            continue
        s = float(y_e @ y_c) / denom
        res = float((y_e - s * y_c).norm()) / max(float(y_e.norm()), 1e-300)
        if res > SCALE_RESIDUAL:
            raise RuntimeError(f"{what}: path weights do not map by one factor (residual {res:.2e})")
        scale[sl] = s
    return scale


def _instruction_slices(instructions) -> list[slice]:
    out, start = [], 0
    for ins in instructions:
        n = int(np.prod(ins.path_shape)) if len(ins.path_shape) else 1
        out.append(slice(start, start + n))
        start += n
    return out


def _adopt(new: torch.nn.Module, old: torch.nn.Module) -> None:
    """Register ``old``'s own parameters and buffers on ``new`` under the same names (same objects)."""
    for name, p in old._parameters.items():
        new.register_parameter(name, p)
    for name, b in old._buffers.items():
        new.register_buffer(name, b, persistent=name not in old._non_persistent_buffers_set)


class _CueModule(torch.nn.Module):
    """Base: float64 master constants and cuEquivariance modules outside the module tree.

    Subclasses call :meth:`_setup` with ``make(method, math_dtype) -> module`` and the constants.
    """

    fast_method: str = "naive"

    def _setup(
        self, make: Callable[[str, torch.dtype | None], torch.nn.Module], constants: dict[str, torch.Tensor], sig: tuple
    ):
        self._make = make
        self._master = {k: v.detach().to("cpu", torch.float64) for k, v in constants.items()}
        # the naive modules are stateless (float64 coefficients only) and slow to build (torch.fx + opt_einsum):
        # one CPU instance per signature is shared; other devices get their own copy in _sync
        key = (type(self).__name__,) + sig
        if key not in _NAIVE_CACHE:
            _NAIVE_CACHE[key] = make("naive", None)
        self._impl: dict[str, torch.nn.Module] = {"naive": _NAIVE_CACHE[key]}
        self._impl_key: tuple = ()
        self.register_buffer("_ref", torch.zeros(0), persistent=False)
        self._sync()

    def _sync(self) -> None:
        device, dtype = self._ref.device, self._ref.dtype
        self._const = {k: v.to(device=device, dtype=dtype) for k, v in self._master.items()}
        naive = self._impl["naive"]
        if any(b.device != device for b in naive.buffers()):
            self._impl["naive"] = copy.deepcopy(naive).to(device)
        key = (device, dtype)
        if device.type == "cuda" and cuda_kernels_available() and self.fast_method != "naive":
            if self._impl_key != key:
                try:
                    self._impl["fast"] = self._make(self.fast_method, dtype).to(device)
                except (ValueError, NotImplementedError, RuntimeError):  # segments not uniform, ...
                    self._impl.pop("fast", None)
        else:
            self._impl.pop("fast", None)
        self._impl_key = key

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self._sync()
        return out

    def impl(self, x: torch.Tensor) -> torch.nn.Module:
        """The fused-kernel module for CUDA inputs when available, else the naive one."""
        if x.is_cuda and "fast" in self._impl:
            return self._impl["fast"]
        return self._impl["naive"]

    @property
    def method(self) -> str:
        """The method used for inputs on this module's device (``naive`` / ``fused_tp`` / ``uniform_1d``)."""
        return self.fast_method if "fast" in self._impl else "naive"
