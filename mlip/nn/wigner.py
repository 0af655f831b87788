"""Exact Wigner 3j coupling buffers of e3nn modules, whatever dtype the model was built or cast in.

e3nn builds its cached ``_w3j_l1_l2_l3`` buffers in torch's default dtype at construction; a model
built under float32 and cast to float64 would otherwise carry float32-rounded coupling coefficients.
:func:`refresh_wigner_buffers` recomputes them in float64 and casts them to each buffer's dtype.
"""

from __future__ import annotations

import re

import torch
from e3nn import o3

__all__ = ["refresh_wigner_buffers"]

_W3J = re.compile(r"(?:^|\.)_w3j_(\d+)_(\d+)_(\d+)$")


def refresh_wigner_buffers(module: torch.nn.Module) -> None:
    """Recompute every ``_w3j_*`` buffer of ``module`` in float64, cast to its current dtype and device."""
    for name, buf in list(module.named_buffers()):
        m = _W3J.search(name)
        if m is None:
            continue
        l1, l2, l3 = (int(g) for g in m.groups())
        exact = o3.wigner_3j(l1, l2, l3, dtype=torch.float64).to(dtype=buf.dtype, device=buf.device)
        with torch.no_grad():
            buf.copy_(exact)
