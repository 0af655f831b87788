"""Symmetric contraction: the MACE product basis (Batatia et al. 2022, Eqs. 10-11).

For every channel ``k`` and output irrep ``L``::

    m_{i,k,LM} = sum_{nu=1..N} sum_p W^{(nu)}_{z_i, p, k} sum_{j_1..j_nu} U^{(nu)}_{M, j_1..j_nu, p} A_{i,k,j_1} .. A_{i,k,j_nu}

with ``U`` the symmetric generalised Clebsch-Gordan basis of :mod:`mlip.nn.coupling` (e3nn 0.6 phase),
``A`` the one-particle basis laid out as ``[N, C, K]`` (``K`` = concatenated irreps ``0e, 1o, ..``),
and weights per element (``z_i``) or shared (element-agnostic, MACE-MH-1).

The evaluation is a Horner scheme: contract the highest order with ``A`` and its weights, add the
next order's weighted basis, contract with ``A`` again, ... Every step is a dense matmul or a
broadcast-multiply-sum, so the module traces cleanly under ``torch.compile``.
"""

from __future__ import annotations

import torch
from e3nn import o3

from mlip.nn.coupling import symmetric_coupling_basis


class SymmetricContraction(torch.nn.Module):
    """Product basis of correlation order ``correlation`` (>= 1).

    Args:
        irreps_in: ``C x (0e + 1o + ..)``; every irrep with the same multiplicity ``C``.
        irreps_out: output irreps, each with multiplicity ``C`` (e.g. ``"16x0e + 16x1o"``).
        correlation: maximal body order nu.
        num_elements: number of weight sets (1 for element-agnostic weights).

    Shapes: ``forward(x [N, irreps_in.dim], element [N] long) -> [N, irreps_out.dim]`` (e3nn mul_ir layout).
    Parameters: ``weights_{o}_{nu}`` of shape ``[num_elements, P_nu, C]`` for output irrep ``o``.
    """

    def __init__(self, irreps_in: o3.Irreps | str, irreps_out: o3.Irreps | str, correlation: int, num_elements: int):
        super().__init__()
        if correlation < 1:
            raise ValueError("correlation must be >= 1")
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        muls = {mul for mul, _ in self.irreps_in} | {mul for mul, _ in self.irreps_out}
        if len(muls) != 1:
            raise ValueError(f"symmetric contraction needs equal multiplicities, got {self.irreps_in} -> {self.irreps_out}")
        self.num_channels = muls.pop()
        self.correlation = correlation
        self.num_elements = num_elements
        coupling = "+".join(str(ir) for _, ir in self.irreps_in)
        self.coupling_irreps = coupling
        self.K = sum(ir.dim for _, ir in self.irreps_in)
        self.out_dims: list[int] = [ir.dim for _, ir in self.irreps_out]
        self.in_dims: list[int] = [ir.dim for _, ir in self.irreps_in]
        self.num_params: list[list[int]] = []
        self.weights = torch.nn.ParameterList()
        K = self.K
        for o, (_, ir) in enumerate(self.irreps_out):
            counts = []
            for nu in range(1, correlation + 1):
                U = symmetric_coupling_basis(coupling, str(ir), nu)  # [M, K..K, P]
                P = U.shape[-1]
                counts.append(P)
                M = ir.dim
                if nu == correlation:
                    # [M, K^(nu-1), k, P] -> [(k, P), (M, K^(nu-1))]
                    mat = U.reshape(M, K ** (nu - 1), K, P).permute(2, 3, 0, 1).reshape(K * P, M * K ** (nu - 1))
                else:
                    mat = U.reshape(M * K**nu, P).T.contiguous()  # [P, (M, K^nu)]
                self.register_buffer(f"U_{o}_{nu}", mat.contiguous(), persistent=False)
                w = torch.randn(num_elements, P, self.num_channels) / max(P, 1)
                self.weights.append(torch.nn.Parameter(w))
            self.num_params.append(counts)

    def weight(self, o: int, nu: int) -> torch.nn.Parameter:
        """Weights ``[num_elements, P, C]`` of output irrep ``o`` and order ``nu``."""
        return self.weights[o * self.correlation + nu - 1]

    def basis(self, o: int, nu: int) -> torch.Tensor:
        """The coupling basis ``U`` of output irrep ``o`` and order ``nu`` as ``[M, K.., P]``."""
        _, ir = self.irreps_out[o]
        return symmetric_coupling_basis(self.coupling_irreps, str(ir), nu)

    def forward(self, x: torch.Tensor, element: torch.Tensor) -> torch.Tensor:
        N = x.shape[0]
        C = self.num_channels
        K = self.K
        # mul_ir layout -> [N, C, K]
        parts = []
        start = 0
        for d in self.in_dims:
            parts.append(x[:, start : start + C * d].reshape(N, C, d))
            start += C * d
        a = torch.cat(parts, dim=-1)
        outs = []
        for o, M in enumerate(self.out_dims):
            nu = self.correlation
            U_top = getattr(self, f"U_{o}_{nu}").to(x.dtype)
            W_top = self.weight(o, nu)  # [E, P, C]
            P = W_top.shape[1]
            Q = M * K ** (nu - 1)
            if self.num_elements < P:
                # weights first: c_e[C, K, Q] = sum_p W[e,p,c] U[k,p,q]; then a per-channel matmul per element
                U3 = U_top.reshape(K, P, Q)
                t = torch.zeros(N, C, Q, dtype=x.dtype, device=x.device)
                a_c = a.transpose(0, 1)  # [C, N, K]
                for e in range(self.num_elements):
                    c_e = torch.einsum("pc,kpq->ckq", W_top[e], U3)
                    t_e = torch.bmm(a_c, c_e).transpose(0, 1)  # [N, C, Q]
                    if self.num_elements == 1:
                        t = t_e
                    else:
                        t = t + t_e * (element == e).to(x.dtype).view(N, 1, 1)
            else:
                # features first: z[n,c,k,p] = a[n,c,k] W[z_n,p,c], then one matmul with U
                w = W_top[element]  # [N, P, C]
                z = a.unsqueeze(-1) * w.transpose(1, 2).unsqueeze(2)  # [N, C, K, P]
                t = (z.reshape(N * C, K * P) @ U_top).reshape(N, C, Q)
            for n in range(nu - 1, 0, -1):
                U_n = getattr(self, f"U_{o}_{n}").to(x.dtype)  # [P_n, M*K^n]
                w_n = self.weight(o, n)[element].transpose(1, 2)  # [N, C, P_n]
                if U_n.shape[0] > 0:
                    t = t + (w_n.reshape(N * C, -1) @ U_n).reshape(N, C, -1)
                t = (t.reshape(N, C, M * K ** (n - 1), K) * a.unsqueeze(2)).sum(-1)
            outs.append(t.reshape(N, C * M))
        return torch.cat(outs, dim=-1)
