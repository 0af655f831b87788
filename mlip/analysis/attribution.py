"""Edge energies ``eps_ij`` of a model: the E3D decomposition (Hattori et al.).

Two routes, both giving one energy per directed edge ``j -> i`` (``edge_index[0] = j`` sender,
``edge_index[1] = i`` receiver), in eV:

* ``readout``: a model built with ``edge_energy_readout`` returns ``eps_ij`` directly (its
  ``edge_energy`` output, ZBL included). Exact: ``E - sum E0 = sum eps``; ``E(0) = sum E0``.
* ``attribution`` (any model): every edge ``e`` gets a gate ``lambda_e`` that multiplies its message
  and density in every layer and its ZBL energy (the model's ``batch["edge_gate"]``), so ``lambda_e = 0``
  removes the edge. Integrated gradients along the straight path ``lambda = t * 1``::

      eps_e = int_0^1 dE/dlambda_e (t 1) dt  ~=  sum_k w_k dE/dlambda_e (t_k 1)

  with ``K``-node Gauss-Legendre quadrature mapped to [0, 1]. Completeness ``sum_e eps_e = E(1) - E(0)``
  holds up to the quadrature error (exact for ``K >= (deg + 1) / 2`` when ``E(t)`` is a polynomial of
  degree ``deg``). ``E(0)`` is the model's energy of the structure with no edges, i.e. the sum of its
  isolated-atom energies; ``self_energy = E(0) - sum E0`` is what the edges cannot carry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mlip.data import keys

METHODS = ("readout", "attribution")


def gauss_legendre_01(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes ``t [K]`` and weights ``w [K]`` on [0, 1] (``sum w = 1``)."""
    if nodes < 1:
        raise ValueError(f"number of quadrature nodes must be >= 1, got {nodes}")
    x, w = np.polynomial.legendre.leggauss(nodes)
    return 0.5 * (x + 1.0), 0.5 * w


@dataclass
class EdgeEnergies:
    """Result for one batch (E edges, B graphs); energies in eV, numpy float64.

    ``eps [E]``: energy of each directed edge. ``energy [B]``: model energy ``E(1)``;
    ``e0_sum [B]``: ``sum_i E0(Z_i)``; ``energy_no_edges [B]``: ``E(0)``.
    """

    eps: np.ndarray
    energy: np.ndarray
    e0_sum: np.ndarray
    energy_no_edges: np.ndarray
    edge_graph: np.ndarray

    @property
    def e_coh(self) -> np.ndarray:
        """``E - sum E0`` per graph."""
        return self.energy - self.e0_sum

    @property
    def self_energy(self) -> np.ndarray:
        """``E(0) - sum E0`` per graph (zero for the readout route)."""
        return self.energy_no_edges - self.e0_sum

    @property
    def sum_eps(self) -> np.ndarray:
        """``sum eps`` over each graph's edges."""
        out = np.zeros(len(self.energy))
        np.add.at(out, self.edge_graph, self.eps)
        return out

    @property
    def completeness_error(self) -> np.ndarray:
        """``|sum eps - (E(1) - E(0))|`` per graph."""
        return np.abs(self.sum_eps - (self.energy - self.energy_no_edges))


def _energy(model: torch.nn.Module, batch: dict[str, torch.Tensor], gate: torch.Tensor | None) -> dict:
    b = dict(batch)
    if gate is not None:
        b[keys.EDGE_GATE] = gate
    return model(b, compute_forces=False, compute_stress=False, training=False)


def edge_energies(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], method: str = "attribution", nodes: int = 16
) -> EdgeEnergies:
    """Edge energies of every graph of ``batch`` by ``method`` (``readout`` | ``attribution``).

    Raises:
        ValueError: unknown method, or ``readout`` on a model without an edge-energy readout.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    edge_index = batch[keys.EDGE_INDEX]
    edge_graph = batch[keys.BATCH][edge_index[1]].cpu().numpy()
    ref = batch[keys.POSITIONS]
    with torch.enable_grad():
        full = _energy(model, batch, None)
        energy = full[keys.ENERGY].detach()
        e0_sum = (full[keys.ENERGY] - full[keys.INTERACTION_ENERGY]).detach()
        if method == "readout":
            if keys.EDGE_ENERGY not in full:
                raise ValueError("method 'readout' needs a model built with edge_energy_readout; use 'attribution'")
            eps = full[keys.EDGE_ENERGY].detach()
            no_edges = e0_sum.clone()
        else:
            t, w = gauss_legendre_01(nodes)
            eps = torch.zeros(edge_index.shape[1], dtype=ref.dtype, device=ref.device)
            for tk, wk in zip(t, w):
                gate = torch.full_like(eps, float(tk)).requires_grad_(True)
                e = _energy(model, batch, gate)[keys.ENERGY]
                (g,) = torch.autograd.grad(e.sum(), gate)
                eps = eps + float(wk) * g.detach()
            zero = torch.zeros_like(eps)
            no_edges = _energy(model, batch, zero)[keys.ENERGY].detach()
    return EdgeEnergies(
        eps=eps.cpu().numpy().astype(np.float64),
        energy=energy.cpu().numpy().astype(np.float64),
        e0_sum=e0_sum.cpu().numpy().astype(np.float64),
        energy_no_edges=no_edges.cpu().numpy().astype(np.float64),
        edge_graph=edge_graph,
    )
