"""Per-structure invariant descriptors for subsampling and replay selection (NEP89-style).

Two kinds:

- :func:`radial_descriptors` needs no model: per unordered element pair (A, B) a radial histogram
  smeared with Gaussians and damped by a smooth cosine cutoff, summed over all pairs of atoms and
  divided by the number of atoms (a per-atom average)::

      D[{A,B}, k] = (1/N) sum_{pairs i<j (any image), {Z_i,Z_j}={A,B}} exp(-(r_ij - mu_k)^2 / (2 sigma^2)) fc(r_ij)
      fc(r) = (cos(pi r / r_c) + 1) / 2 for r < r_c, else 0

  with ``mu_k`` evenly spaced on [r_min, r_c] and sigma the spacing. Invariant to rotation, translation,
  permutation and choice of cell; continuous in the positions. The element list is fixed per call, so
  the vectors of all frames are comparable. Shape [F, S(S+1)/2 * K].
- :func:`model_descriptors` mean-pools a model's invariant node features (``node_feats`` of the forward
  output, [N, F]) per structure: shape [F, D]. Use it when a trained model exists.

Structures are :class:`ase.Atoms` or :class:`mlip.data.configuration.Configuration` (duck-typed on
``numbers``, ``positions``, ``cell``, ``pbc``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlip.data import keys
from mlip.data.neighbors import neighbor_list
from mlip.errors import ConfigError, DataError


def _numbers(s: Any) -> np.ndarray:
    return np.asarray(s.numbers, dtype=np.int64)


def _cell(s: Any) -> np.ndarray:
    return np.asarray(s.cell, dtype=float).reshape(3, 3)


def species_of(structures: Sequence[Any]) -> list[int]:
    """Sorted atomic numbers present in ``structures``."""
    zs: set[int] = set()
    for s in structures:
        zs.update(int(z) for z in _numbers(s))
    return sorted(zs)


def radial_descriptors(
    structures: Sequence[Any],
    species: Sequence[int] | None = None,
    cutoff: float = 5.0,
    n_radial: int = 8,
    r_min: float = 0.5,
) -> np.ndarray:
    """Model-free invariant descriptors [F, P*K] (P = S(S+1)/2 element pairs, K = ``n_radial``).

    ``species`` fixes the element list (default: all elements in ``structures``); a frame holding an
    element outside it raises :class:`DataError`. ``cutoff`` and ``r_min`` in Angstrom.
    """
    if cutoff <= r_min or n_radial < 1:
        raise ConfigError(f"descriptor needs cutoff > r_min and n_radial >= 1 (got {cutoff}, {r_min}, {n_radial})")
    species = list(species) if species is not None else species_of(structures)
    index = {z: s for s, z in enumerate(species)}
    n_s = len(species)
    pair_index = np.full((n_s, n_s), -1, dtype=np.int64)
    p = 0
    for a in range(n_s):
        for b in range(a, n_s):
            pair_index[a, b] = pair_index[b, a] = p
            p += 1
    mu = np.linspace(r_min, cutoff, n_radial)
    sigma = (cutoff - r_min) / max(n_radial - 1, 1)
    out = np.zeros((len(structures), p, n_radial), dtype=float)
    for f, s in enumerate(structures):
        numbers = _numbers(s)
        try:
            kinds = np.array([index[int(z)] for z in numbers], dtype=np.int64)
        except KeyError as err:
            raise DataError(f"frame {f}: element Z={err.args[0]} not in the descriptor's species list") from None
        if len(numbers) == 0:
            continue
        # the full (directed) list counts every pair twice, each periodic self-image pair too: half weight each
        j, i, _, d = neighbor_list(np.asarray(s.positions, dtype=float), _cell(s), np.asarray(s.pbc), cutoff)
        if d.size == 0:
            continue
        fc = 0.25 * (np.cos(np.pi * d / cutoff) + 1.0)
        g = np.exp(-((d[:, None] - mu[None, :]) ** 2) / (2.0 * sigma**2)) * fc[:, None]
        np.add.at(out[f], pair_index[kinds[i], kinds[j]], g)
        out[f] /= len(numbers)
    return out.reshape(len(structures), p * n_radial)


# ----------------------------------------------------------------------------------------------------
# model-based descriptors


def model_outputs(
    model: Any,
    structures: Sequence[Any],
    batch_size: int = 16,
    head: str | None = None,
    device: str | None = None,
) -> dict[str, np.ndarray]:
    """Run ``model`` without gradients; returns ``energy`` [F] (eV) and ``descriptors`` [F, D] (mean of
    ``node_feats`` over each structure's atoms).

    ``head`` selects the output head for the energies; without it each structure's own head, else the
    model's ``default_head`` (:func:`mlip.nn.heads.frame_head`), as every other command.
    """
    import torch

    from mlip.inference import predict_chunks

    energies: list[np.ndarray] = []
    feats: list[np.ndarray] = []
    for chunk, out in predict_chunks(model, structures, head, batch_size, device, compute_forces=False):
        n_graphs = len(chunk.configs)
        node = out[keys.NODE_FEATS].detach()
        index = chunk.batch[keys.BATCH]
        pooled = torch.zeros(n_graphs, node.shape[1], dtype=node.dtype, device=node.device)
        pooled.index_add_(0, index, node)
        count = torch.bincount(index, minlength=n_graphs).clamp(min=1).to(node.dtype)
        feats.append((pooled / count[:, None]).cpu().double().numpy())
        energies.append(out[keys.ENERGY].detach().cpu().double().numpy().reshape(-1))
    if not structures:
        return {"energy": np.zeros(0), "descriptors": np.zeros((0, 0))}
    return {"energy": np.concatenate(energies), "descriptors": np.concatenate(feats, axis=0)}


def model_descriptors(model: Any, structures: Sequence[Any], batch_size: int = 16, device: str | None = None) -> np.ndarray:
    """Mean-pooled invariant node features of ``model`` per structure, shape [F, D]."""
    return model_outputs(model, structures, batch_size=batch_size, device=device)["descriptors"]
