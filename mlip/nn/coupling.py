"""Generalised Clebsch-Gordan coupling bases for the symmetric contraction (product basis).

For input irreps ``ir_1 .. ir_n`` (each once, e.g. ``0e+1o+2e+3o``, total dimension ``K``) and an
output irrep ``L`` we build a basis of the tensors ``U[M, i_1, .., i_nu]`` that are

* O(3)-equivariant: ``D_L(g) U = U (D(g) x .. x D(g))`` with e3nn 0.6's real irreps, and
* fully symmetric in ``i_1 .. i_nu``, so that ``sum U[M, i..] x_i1 .. x_inu`` is the symmetric
  product of nu copies of ``x`` coupled to ``L`` (MACE, Batatia et al. 2022, Eq. 10).

Construction (our own): for every multiset of input irreps, couple them sequentially with
``e3nn.o3.wigner_3j`` (all intermediate irreps), average each coupled tensor over the permutations of
positions that carry the same irrep, orthonormalise by modified Gram-Schmidt in a fixed order (so the
basis is deterministic: no SVD rotations), then place the block at every distinct ordering of the
multiset. Each basis vector has Frobenius norm ``sqrt(2L+1)``.

The phase convention is e3nn 0.6's ``wigner_3j``; imported weights that were expressed in another
basis (mace-torch's ``U_matrix_*``) are mapped with :func:`basis_transform`.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import torch
from e3nn import o3

_TOL = 1e-9


def _distinct_orderings(seq: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Distinct permutations (as position maps) of ``seq``: maps ``perm`` with seq[perm] unique."""
    seen: dict[tuple[int, ...], tuple[int, ...]] = {}
    for perm in itertools.permutations(range(len(seq))):
        key = tuple(seq[p] for p in perm)
        if key not in seen:
            seen[key] = perm
    return list(seen.values())


def _couple_chain(irreps: list[o3.Irrep], seq: tuple[int, ...], target: o3.Irrep) -> list[torch.Tensor]:
    """All sequential couplings of ``irreps[seq[0]] x irreps[seq[1]] x ..`` ending in ``target``.

    Returns local tensors of shape ``[2L+1, d_seq0, d_seq1, ...]`` (float64).
    """
    lmax_in = max(ir.l for ir in irreps)
    first = irreps[seq[0]]
    chains: list[tuple[o3.Irrep, torch.Tensor]] = [(first, torch.eye(first.dim, dtype=torch.float64))]
    for step, idx in enumerate(seq[1:], start=1):
        ir_b = irreps[idx]
        remaining = len(seq) - 1 - step
        new_chains = []
        for ir_cur, t in chains:
            for ir_out in ir_cur * ir_b:
                if ir_out.l > target.l + remaining * lmax_in:
                    continue
                if remaining == 0 and ir_out != target:
                    continue
                w = o3.wigner_3j(ir_cur.l, ir_b.l, ir_out.l, dtype=torch.float64)  # [c, b, o]
                # t: [c, d0, .., d_{step-1}] -> [o, d0, .., d_{step-1}, b]
                t_new = torch.einsum("cbo,c...->o...b", w, t)
                new_chains.append((ir_out, t_new))
        chains = new_chains
    return [t for ir, t in chains if ir == target]


def _gram_schmidt(vectors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Modified Gram-Schmidt (twice) in the given order; drops dependent vectors."""
    basis: list[torch.Tensor] = []
    for v in vectors:
        norm0 = v.norm()
        if norm0 < _TOL:
            continue
        w = v / norm0
        for _ in range(2):
            for b in basis:
                w = w - (b * w).sum() * b
        n = w.norm()
        if n > 1e-7:
            basis.append(w / n)
    return basis


@lru_cache(maxsize=64)
def symmetric_coupling_basis(irreps_in: str, irrep_out: str, correlation: int) -> torch.Tensor:
    """Basis ``U`` of shape ``[2L+1, K, .., K (nu times), P]`` (float64, CPU).

    ``irreps_in`` lists distinct irreps (multiplicity ignored), e.g. ``"0e+1o+2e"``. ``P`` may be 0.
    """
    irreps = [ir for _, ir in o3.Irreps(irreps_in)]
    target = o3.Irrep(irrep_out)
    dims = [ir.dim for ir in irreps]
    offsets = [sum(dims[:i]) for i in range(len(dims))]
    K = sum(dims)
    nu = correlation
    out: list[torch.Tensor] = []
    for seq in itertools.combinations_with_replacement(range(len(irreps)), nu):
        parity = 1
        for i in seq:
            parity *= irreps[i].p
        if parity != target.p:
            continue
        locals_ = _couple_chain(irreps, seq, target)
        if not locals_:
            continue
        # symmetrise over permutations of positions that carry the same irrep
        stab = [p for p in itertools.permutations(range(nu)) if tuple(seq[i] for i in p) == seq]
        sym = []
        for t in locals_:
            acc = torch.zeros_like(t)
            for p in stab:
                acc = acc + t.permute(0, *[1 + i for i in p])
            sym.append(acc / len(stab))
        local_basis = _gram_schmidt(sym)
        orderings = _distinct_orderings(seq)
        for t in local_basis:
            full = torch.zeros((target.dim,) + (K,) * nu, dtype=torch.float64)
            for perm in orderings:
                index = [slice(None)] + [
                    slice(offsets[seq[p]], offsets[seq[p]] + dims[seq[p]]) for p in perm
                ]
                full[tuple(index)] = t.permute(0, *[1 + p for p in perm])
            full = full * (target.dim**0.5 / full.norm())
            out.append(full)
    if not out:
        return torch.zeros((target.dim,) + (K,) * nu + (0,), dtype=torch.float64)
    return torch.stack(out, dim=-1)


def symmetrise(U: torch.Tensor, correlation: int) -> torch.Tensor:
    """Average ``U[M, i_1..i_nu, P]`` over all permutations of the ``i`` axes."""
    acc = torch.zeros_like(U)
    perms = list(itertools.permutations(range(correlation)))
    for p in perms:
        acc = acc + U.permute(0, *[1 + i for i in p], correlation + 1)
    return acc / len(perms)


def basis_transform(U_ours: torch.Tensor, U_other: torch.Tensor, correlation: int) -> tuple[torch.Tensor, float]:
    """Matrix ``T`` [P_ours, P_other] with ``sym(U_other) = U_ours @ T`` (least squares) and its residual.

    Weights expressed in the other basis map to ours as ``W_ours = T @ W_other``.
    """
    if U_ours.dim() == correlation + 1:  # L = 0 bases may come without the M axis
        U_ours = U_ours.unsqueeze(0)
    if U_other.dim() == correlation + 1:
        U_other = U_other.unsqueeze(0)
    U_other = symmetrise(U_other.to(torch.float64), correlation)
    A = U_ours.reshape(-1, U_ours.shape[-1])
    B = U_other.reshape(-1, U_other.shape[-1])
    if A.shape[1] == 0:
        return torch.zeros((0, B.shape[1]), dtype=torch.float64), float(B.abs().max()) if B.numel() else 0.0
    T = torch.linalg.lstsq(A, B).solution
    resid = float((A @ T - B).abs().max()) if B.numel() else 0.0
    return T, resid
