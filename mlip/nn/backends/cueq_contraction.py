"""cuEquivariance symmetric contraction (:class:`CueqSymmetricContraction`): our coupling-basis weights
mapped exactly onto ``cue.descriptors.symmetric_contraction`` (``W_cueq = T W_ours``, see
:mod:`mlip.nn.backends.cueq`)."""

from __future__ import annotations

import functools

import numpy as np
import torch
from e3nn import o3

from mlip.nn.backends.cueq_base import BASIS_RESIDUAL, _cue, _CueModule, cue_irreps


# ----------------------------------------------------------------- symmetric contraction
@functools.lru_cache(maxsize=None)
def _sc_descriptor(irreps_in: str, irreps_out: str, correlation: int):
    cue, _ = _cue()
    return cue.descriptors.symmetric_contraction(cue_irreps(irreps_in), cue_irreps(irreps_out),
                                                 list(range(1, correlation + 1)))


def _mul_one(irreps: str) -> str:
    return str(o3.Irreps([(1, ir) for _, ir in o3.Irreps(irreps)]))


@functools.lru_cache(maxsize=None)
def _sc_dense_tables(irreps_in: str, irreps_out: str, correlation: int) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int]:
    """cuEquivariance's symmetric-contraction polynomial as dense tables, one per degree nu.

    Returns ``[(idx [n_mono, nu] long, G [n_mono, P_cueq * out_dim] float64)]`` over the distinct
    sorted index tuples (monomials) of the input components, and ``P_cueq``. Every path
    ``c * w_a * x_i1 .. x_inu -> out_k`` of the descriptor (multiplicity 1) is summed into
    ``G[sorted(i), a, k]``.
    """
    e = _sc_descriptor(_mul_one(irreps_in), _mul_one(irreps_out), correlation)
    P_c, out_dim = e.inputs[0].dim, e.outputs[0].dim
    tables: dict[int, dict[tuple[int, ...], np.ndarray]] = {}
    for op, stp in e.polynomial.operations:
        buffers = list(op.buffers)
        nu = len(buffers) - 2
        if buffers[0] != 0 or any(b != 1 for b in buffers[1:-1]) or buffers[-1] != 2:
            raise RuntimeError(f"unexpected symmetric-contraction operation {op}")
        table = tables.setdefault(nu, {})
        for path in stp.paths:
            a, *ins, k = path.indices
            key = tuple(sorted(ins))
            row = table.setdefault(key, np.zeros((P_c, out_dim)))
            row[a, k] += float(np.asarray(path.coefficients).reshape(()))
    out = []
    for nu in sorted(tables):
        keys = sorted(tables[nu])
        idx = torch.tensor(keys, dtype=torch.long).reshape(len(keys), nu)
        G = torch.tensor(np.stack([tables[nu][k] for k in keys]), dtype=torch.float64).reshape(len(keys), -1)
        out.append((idx, G))
    return out, P_c


def _sc_dense_eval(a: torch.Tensor, w: torch.Tensor, tables: list[tuple[torch.Tensor, torch.Tensor]], P_c: int) -> torch.Tensor:
    """``out [N, C, out_dim]`` of cuEquivariance's polynomial for ``a [N, C, K]`` and atom weights ``w [N, P_c, C]``."""
    N, C, _ = a.shape
    out = None
    for idx, G in tables:
        mono = a[:, :, idx[:, 0]]
        for j in range(1, idx.shape[1]):
            mono = mono * a[:, :, idx[:, j]]  # [N, C, n_mono]
        B = (mono.reshape(N * C, -1) @ G).reshape(N, C, P_c, -1)
        term = (B * w.transpose(1, 2).unsqueeze(-1)).sum(2)
        out = term if out is None else out + term
    return out


@functools.lru_cache(maxsize=None)
def _sc_transform(irreps_in: str, irreps_out: str, correlation: int) -> tuple[torch.Tensor, float]:
    """``T [P_cueq, P_ours]`` with ``U_cueq T = U_ours`` on symmetric inputs, and the relative residual."""
    from mlip.nn.coupling import symmetric_coupling_basis

    ins, outs = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
    tables, P_c = _sc_dense_tables(irreps_in, irreps_out, correlation)
    K, out_dim = sum(ir.dim for _, ir in ins), sum(ir.dim for _, ir in outs)
    S = 48
    x = torch.randn(S, K, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    # cuEquivariance's basis on the samples: F[s, m, a] (one channel, weight a set to 1)
    eye = torch.eye(P_c, dtype=torch.float64)
    F = torch.stack([_sc_dense_eval(x.unsqueeze(1), eye[a].view(1, P_c, 1).expand(S, P_c, 1), tables, P_c)[:, 0]
                     for a in range(P_c)], dim=-1)
    # ours: G[s, m, p], parameters ordered as SymmetricContraction.weights (output-major, then nu)
    blocks = []
    offset = 0
    for _, ir in outs:
        M = ir.dim
        for nu in range(1, correlation + 1):
            U = symmetric_coupling_basis("+".join(str(i) for _, i in ins), str(ir), nu)  # [M, K.., P]
            sub = "abcdefgh"[:nu]
            g = torch.einsum(f"M{sub}P," + ",".join(f"S{c}" for c in sub) + "->SMP", U.to(torch.float64), *([x] * nu))
            G_block = torch.zeros(S, out_dim, U.shape[-1], dtype=torch.float64)
            G_block[:, offset : offset + M, :] = g
            blocks.append(G_block)
        offset += M
    G = torch.cat(blocks, dim=-1)
    A, B = F.reshape(-1, P_c), G.reshape(-1, G.shape[-1])
    T = torch.linalg.lstsq(A, B, driver="gelsd").solution
    res = float((A @ T - B).norm() / B.norm())
    if res > BASIS_RESIDUAL:
        raise RuntimeError(
            f"symmetric contraction {irreps_in} -> {irreps_out} (nu={correlation}): "
            f"cuEquivariance basis does not span ours (residual {res:.2e})"
        )
    return T, res


class CueqSymmetricContraction(_CueModule):
    """:class:`~mlip.nn.contraction.SymmetricContraction` with cuEquivariance's basis and kernel.

    Keeps the weights ``[E, P, C]`` in our basis (parameters ``weights.i``, as the e3nn backend) and
    forms ``W_cueq = T W`` in ``forward`` (``T`` from :func:`_sc_transform`). On CUDA with
    ``cuequivariance_ops_torch``: ``cuet.SegmentedPolynomial(cue.descriptors.symmetric_contraction(..),
    method="uniform_1d")``. Elsewhere the same descriptor is evaluated by :func:`_sc_dense_eval`
    (its paths summed into dense monomial tables): cuEquivariance-torch's own ``naive`` method
    builds one einsum per path through torch.fx and takes minutes to construct for l <= 3, nu = 3.
    """

    fast_method = "uniform_1d"

    def __init__(self, sc: torch.nn.Module):
        super().__init__()
        cue, cuet = _cue()
        self.irreps_in, self.irreps_out = sc.irreps_in, sc.irreps_out
        self.num_channels, self.correlation, self.num_elements = sc.num_channels, sc.correlation, sc.num_elements
        self.coupling_irreps = sc.coupling_irreps
        self.num_params = sc.num_params
        self.in_dims = [ir.dim for _, ir in self.irreps_in]
        self.out_dims = [ir.dim for _, ir in self.irreps_out]
        self.weights = sc.weights
        key = (str(self.irreps_in), str(self.irreps_out), self.correlation)
        T, self.basis_residual = _sc_transform(*key)
        tables, self.P_c = _sc_dense_tables(*key)
        consts = {"T": T}
        for nu, (idx, G) in enumerate(tables):
            consts[f"G{nu}"] = G
            self.register_buffer(f"idx{nu}", idx, persistent=False)
        self.num_tables = len(tables)

        def make(method: str, math_dtype: torch.dtype | None) -> torch.nn.Module:
            if method == "naive":
                return torch.nn.Module()  # evaluated densely by _sc_dense_eval (see the class docstring)
            e = _sc_descriptor(*key[:2], self.correlation)
            if not e.all_same_segment_shape():
                raise ValueError("segments are not uniform")
            mod = torch.nn.Module()
            mod.poly = cuet.SegmentedPolynomial(e.polynomial, method=method, math_dtype=math_dtype)
            mod.t_in = cuet.TransposeIrrepsLayout(e.inputs[1].irreps, source=cue.mul_ir, target=e.inputs[1].layout)
            mod.t_out = cuet.TransposeIrrepsLayout(e.outputs[0].irreps, source=e.outputs[0].layout, target=cue.mul_ir)
            return mod

        self._setup(make, consts, key)

    def weight(self, o: int, nu: int) -> torch.nn.Parameter:
        """Weights ``[num_elements, P, C]`` of output irrep ``o`` and order ``nu`` (our basis)."""
        return self.weights[o * self.correlation + nu - 1]

    def basis(self, o: int, nu: int) -> torch.Tensor:
        """Our coupling basis ``U`` of output irrep ``o`` and order ``nu`` as ``[M, K.., P]``."""
        from mlip.nn.coupling import symmetric_coupling_basis

        _, ir = self.irreps_out[o]
        return symmetric_coupling_basis(self.coupling_irreps, str(ir), nu)

    def forward(self, x: torch.Tensor, element: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        """As :meth:`mlip.nn.contraction.SymmetricContraction.forward`; ``present`` is not used."""
        W = torch.cat(list(self.weights), dim=1)  # [E, P_ours, C]
        w = torch.einsum("ap,epc->eac", self._const["T"], W)  # [E, P_cueq, C]
        if x.is_cuda and "fast" in self._impl:
            mod = self._impl["fast"]
            out = mod.poly([w.flatten(1), mod.t_in(x)], input_indices={0: element})[0]
            return mod.t_out(out)
        N, C = x.shape[0], self.num_channels
        parts, start = [], 0
        for d in self.in_dims:  # mul_ir -> [N, C, K]
            parts.append(x[:, start : start + C * d].reshape(N, C, d))
            start += C * d
        a = torch.cat(parts, dim=-1)
        tables = [(getattr(self, f"idx{nu}"), self._const[f"G{nu}"]) for nu in range(self.num_tables)]
        out = _sc_dense_eval(a, w[element], tables, self.P_c)  # [N, C, out_dim]
        blocks, start = [], 0
        for M in self.out_dims:  # -> mul_ir
            blocks.append(out[:, :, start : start + M].reshape(N, C * M))
            start += M
        return torch.cat(blocks, dim=-1)
