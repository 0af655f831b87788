"""LLPR linear algebra: the regularised Gauss-Newton matrix, predictive variances, calibration.

For one head with last-layer features ``f`` [P] (:mod:`mlip.uncertainty.features`), training features
``F`` [n, P] and ``H0 = F^T F`` (the Gauss-Newton matrix of the energy MSE with respect to the last-layer
weights, up to a constant), the LLPR variance of a prediction is

``sigma^2(f) = alpha^2 f^T (H0 + lambda I)^-1 f``.

This is the predictive variance of the mean of Bayesian linear regression on the features with prior
``w ~ N(0, (alpha^2 / lambda) I)`` and noise variance ``alpha^2``. Derivatives of the prediction (forces,
stress) use the Jacobian ``g = df/dx`` in place of ``f``. Energy differences use ``f_i - f_j``.

Calibration (:func:`calibrate`) maximises the Gaussian log-likelihood of observed errors ``e``,
``sum_k log N(e_k; 0, alpha^2 s_k(lambda))`` with ``s_k(lambda) = g_k^T (H0 + lambda I)^-1 g_k``; for a fixed
``lambda`` the optimal ``alpha^2 = mean(e_k^2 / s_k)`` (closed form), and ``lambda`` is found by a search on
a log grid (then refined) of the profile likelihood. With ``H0 = U diag(d) U^T`` and projections
``q_k = U^T g_k``, ``s_k(lambda) = sum_p q_kp^2 / (d_p + lambda)``, so each trial costs one matrix-vector product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mlip.errors import DataError


@dataclass
class Calibration:
    """Result of :func:`calibrate`: ``alpha2`` (dimensionless), ``reg`` (lambda, units of ``H0``),
    ``nll`` (mean Gaussian negative log-likelihood per error term at the optimum) and ``n`` (terms)."""

    alpha2: float
    reg: float
    nll: float
    n: int


def regularised_inverse(gram: torch.Tensor, reg: float) -> torch.Tensor:
    """``(H0 + reg I)^-1`` [P, P] in float64 (symmetrised)."""
    g = gram.to(torch.float64)
    eye = torch.eye(g.shape[0], dtype=torch.float64, device=g.device)
    inv = torch.linalg.inv(g + reg * eye)
    return 0.5 * (inv + inv.T)


def covariance_factor(gram: torch.Tensor, alpha2: float, reg: float) -> torch.Tensor:
    """``L`` [P, P] with ``L L^T = alpha^2 (H0 + reg I)^-1`` (the last-layer weight covariance).

    From the eigendecomposition of ``H0`` (stable for nearly singular ``H0``): ``L = U diag(alpha / sqrt(d + reg))``.
    """
    d, u = torch.linalg.eigh(gram.to(torch.float64))
    d = d.clamp_min(0.0)
    return u * torch.sqrt(alpha2 / (d + reg)).unsqueeze(0)


def predictive_variance(features: torch.Tensor, gram: torch.Tensor, alpha2: float, reg: float) -> torch.Tensor:
    """``alpha^2 f^T (H0 + reg I)^-1 f`` for each row of ``features`` [n, P] -> [n]."""
    f = features.to(torch.float64)
    return alpha2 * torch.einsum("np,pq,nq->n", f, regularised_inverse(gram, reg).to(f.device), f)


def difference_sigma(features: torch.Tensor, gram: torch.Tensor, alpha2: float, reg: float) -> torch.Tensor:
    """``sigma(E_i - E_j) = alpha sqrt((f_i - f_j)^T (H0 + reg I)^-1 (f_i - f_j))`` for all pairs, [n, n] (eV).

    Computed from the energy covariance ``C = alpha^2 F (H0 + reg I)^-1 F^T`` as ``sqrt(C_ii + C_jj - 2 C_ij)``.
    """
    f = features.to(torch.float64)
    cov = alpha2 * f @ regularised_inverse(gram, reg).to(f.device) @ f.T
    diag = torch.diagonal(cov)
    var = (diag[:, None] + diag[None, :] - 2.0 * cov).clamp_min(0.0)
    return torch.sqrt(var)


def _profile(sq_proj: torch.Tensor, err2: torch.Tensor, d: torch.Tensor, reg: float) -> tuple[float, float]:
    """(mean negative log-likelihood, alpha^2) at ``reg`` for squared projections [n, P] and errors^2 [n]."""
    s = (sq_proj / (d + reg).unsqueeze(0)).sum(dim=1).clamp_min(1e-300)
    alpha2 = float((err2 / s).mean())
    nll = 0.5 * float((torch.log(2.0 * math.pi * alpha2 * s)).mean()) + 0.5
    return nll, alpha2


def calibrate(
    projections: torch.Tensor, errors: torch.Tensor, eigenvalues: torch.Tensor, reg: float | None = None
) -> Calibration:
    """Maximum-likelihood ``alpha^2`` and ``lambda`` from error terms.

    Args:
        projections: ``q_k = U^T g_k`` [n, P], the features (energies) or feature derivatives (force
            components) of each validation term in the eigenbasis ``U`` of ``H0``.
        errors: observed errors ``e_k`` [n] (prediction - reference) in the units of the prediction.
        eigenvalues: ``d`` [P], eigenvalues of ``H0``.
        reg: keep ``lambda`` fixed at this value (only ``alpha^2`` is fitted).
    """
    q2 = projections.to(torch.float64) ** 2
    e2 = errors.to(torch.float64).reshape(-1) ** 2
    d = eigenvalues.to(torch.float64).clamp_min(0.0)
    if q2.shape[0] == 0 or q2.shape[0] != e2.shape[0]:
        raise DataError(f"calibration needs error terms: got {q2.shape[0]} projections and {e2.shape[0]} errors")
    if reg is not None:
        nll, alpha2 = _profile(q2, e2, d, reg)
        return Calibration(alpha2, float(reg), nll, int(e2.shape[0]))
    top = max(float(d.max()), 1e-300)
    logs = torch.linspace(math.log10(top) - 14.0, math.log10(top) + 2.0, 161, dtype=torch.float64).tolist()
    scores = [_profile(q2, e2, d, 10.0**x)[0] for x in logs]
    best = min(range(len(logs)), key=scores.__getitem__)
    lo, hi = logs[max(best - 1, 0)], logs[min(best + 1, len(logs) - 1)]
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(40):  # golden-section refinement in log10(lambda)
        a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
        if _profile(q2, e2, d, 10.0**a)[0] < _profile(q2, e2, d, 10.0**b)[0]:
            hi = b
        else:
            lo = a
    reg_best = 10.0 ** (0.5 * (lo + hi))
    nll, alpha2 = _profile(q2, e2, d, reg_best)
    return Calibration(alpha2, reg_best, nll, int(e2.shape[0]))


def scale_calibration(errors: torch.Tensor, sigmas: torch.Tensor) -> float:
    """Maximum-likelihood factor ``a^2`` for predicted sigmas (``e ~ N(0, a^2 sigma^2)``): ``mean(e^2 / sigma^2)``.

    Used for committees, whose spread has no regulariser to fit.
    """
    s2 = sigmas.to(torch.float64).reshape(-1) ** 2
    e2 = errors.to(torch.float64).reshape(-1) ** 2
    keep = s2 > 0
    if not bool(keep.any()):
        raise DataError("scale calibration: every predicted sigma is zero")
    return float((e2[keep] / s2[keep]).mean())
