"""Small randomly-initialised models covering every block variant (for physics tests)."""

from __future__ import annotations

import torch

from mlip.nn.hparams import ModelHyperparameters
from mlip.nn.model import build_model
from mlip.nn.wigner import refresh_wigner_buffers

COMMON = dict(
    r_max=3.0,
    num_bessel=6,
    num_polynomial_cutoff=5,
    max_ell=2,
    hidden_irreps="4x0e + 4x1o",
    num_interactions=2,
    correlation=3,
    radial_mlp=[8, 8],
    mlp_irreps="4x0e",
    avg_num_neighbors=3.0,
)

VARIANTS = {
    "residual": dict(atomic_numbers=[1, 6, 8], interaction="residual", interaction_first="residual"),
    "density_zbl_agnesi": dict(
        atomic_numbers=[14, 42],
        interaction="density_residual",
        interaction_first="density",
        pair_repulsion=True,
        distance_transform="agnesi",
    ),
    "nonlinear_two_heads": dict(
        atomic_numbers=[1, 6, 8],
        interaction="nonlinear",
        interaction_first="nonlinear",
        edge_irreps="4x0e + 4x1o",
        use_agnostic_product=True,
        apply_cutoff=False,
        heads=["a", "b"],
        scale=[0.9, 1.2],
        shift=[0.1, -0.2],
    ),
}


_CACHE: dict = {}


def small_model(name: str, seed: int = 0, dtype=torch.float64):
    """Cached per (name, seed, dtype): tests must not modify the returned model."""
    key = (name, seed, dtype)
    if key not in _CACHE:
        _CACHE[key] = _build(name, seed, dtype)
    return _CACHE[key]


def _build(name: str, seed: int, dtype):
    hp = ModelHyperparameters(**COMMON, **VARIANTS[name])
    nz = len(hp.atomic_numbers)
    hp.atomic_energies = [[-1.0 - 0.1 * i - h for i in range(nz)] for h in range(len(hp.heads))]
    torch.manual_seed(seed)
    model = build_model(hp, dtype=torch.float64)
    with torch.no_grad():  # move every parameter away from its initial value
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model.to(dtype)
    refresh_wigner_buffers(model)
    return model
