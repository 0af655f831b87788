"""Symmetric contraction: the MACE product basis (Batatia et al. 2022, Eqs. 10-11).

For every channel ``k`` and output irrep ``L``::

    m_{i,k,LM} = sum_{nu=1..N} sum_p W^{(nu)}_{z_i, p, k} sum_{j_1..j_nu} U^{(nu)}_{M, j_1..j_nu, p} A_{i,k,j_1} .. A_{i,k,j_nu}

with ``U`` the symmetric generalised Clebsch-Gordan basis of :mod:`mlip.nn.coupling` (e3nn 0.6 phase),
``A`` the one-particle basis laid out as ``[N, C, K]`` (``K`` = concatenated irreps ``0e, 1o, ..``),
and weights per element (``z_i``) or shared (element-agnostic, MACE-MH-1).

Evaluation (four strategies; the cheapest is picked from weighted operation counts, at construction for the first
three and at each call for ``mixed``, whose cost grows with the number of elements present):

* ``horner`` (few weight sets, e.g. element-agnostic): ``((c_nu A + c_{nu-1}) A + ..) A`` with
  ``c_n = W_e U_n`` formed per element once per forward pass;
* ``features``: the same Horner scheme with the top order as ``(A x W_{z_i}) @ U`` (one matmul);
* ``monomial``: because ``U`` is symmetric, only the distinct monomials ``A_{j_1} .. A_{j_nu}`` with
``j_1 <= .. <= j_nu`` are needed (816 instead of 4096 for K = 16, nu = 3). They are built order by
order (each monomial = a lower-order monomial times one more ``A``), multiplied order by order by a
matrix ``G_nu`` (the basis with each monomial's multiplicity folded in) and contracted with the
atom's weights; the cost does not depend on the number of elements.

None has data-dependent control flow in a compiled graph (``torch.compile`` traces each; ``mixed`` branches on the
number of elements present, a size). Eager ``mixed`` calls with several elements present sort the atoms by element
and apply each element's coefficients to its own atoms only.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter

import torch
from e3nn import o3

from mlip.data import keys
from mlip.nn.coupling import symmetric_coupling_basis

_STATIC = ("horner", "features", "monomial")
"""The strategies chosen once, at construction (``mixed`` depends on the elements present in a call)."""
MIXED_SHARE = {"eager": 1.0, "compiled": 0.6}
"""``auto`` runs ``mixed`` when its cost is below this share of the static choice's. Compiled graphs need a margin:
their small products run at a lower rate, and a molecule pays the per-call coefficients ``W_z U`` over few atoms
(acac, 15 atoms, 3 of 4 elements, float32: 19.5 ms mixed against 11.0 monomial at a cost ratio of 0.84; Si 512,
one element: 336 against 534 ms at 0.29)."""


def _monomials(K: int, correlation: int) -> list[tuple[torch.Tensor, torch.Tensor, list[tuple[int, ...]]]]:
    """Per order nu >= 2: (parent index into order nu-1, last factor index, sorted index tuples)."""
    out = []
    prev = {(j,): j for j in range(K)}
    for nu in range(2, correlation + 1):
        combos = list(itertools.combinations_with_replacement(range(K), nu))
        parent = torch.tensor([prev[c[:-1]] for c in combos], dtype=torch.long)
        last = torch.tensor([c[-1] for c in combos], dtype=torch.long)
        out.append((parent, last, combos))
        prev = {c: i for i, c in enumerate(combos)}
    return out


def _multiplicities(combos: list[tuple[int, ...]]) -> torch.Tensor:
    """Orderings of each sorted index tuple (``nu! / prod(count!)``): how often ``U`` meets that monomial."""
    return torch.tensor(
        [math.factorial(len(c)) / math.prod(math.factorial(v) for v in Counter(c).values()) for c in combos],
        dtype=torch.float64,
    )


def with_species(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``batch`` with :data:`~mlip.data.keys.SPECIES` (its distinct atomic numbers) added, if absent.

    For compiled calls: the ``mixed`` contraction evaluates only these elements' weights, and a compiled graph
    cannot find them itself (their number is data). Eager calls need not add it.
    """
    if keys.SPECIES in batch:
        return batch
    return {**batch, keys.SPECIES: torch.unique(batch[keys.NUMBERS])}


class SymmetricContraction(torch.nn.Module):
    """Product basis of correlation order ``correlation`` (>= 1).

    Args:
        irreps_in: ``C x (0e + 1o + ..)``; every irrep with the same multiplicity ``C``.
        irreps_out: output irreps, each with multiplicity ``C`` (e.g. ``"16x0e + 16x1o"``).
        correlation: maximal body order nu.
        num_elements: number of weight sets (1 for element-agnostic weights).

    Shapes: ``forward(x [N, irreps_in.dim], element [N] long) -> [N, irreps_out.dim]`` (e3nn mul_ir layout).
    Parameters: ``weights.{o * correlation + nu - 1}`` of shape ``[num_elements, P_nu, C]``
    (see :meth:`weight`), expressed in the basis :meth:`basis`.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        correlation: int,
        num_elements: int,
        strategy: str = "auto",
    ):
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
        self.coupling_irreps = "+".join(str(ir) for _, ir in self.irreps_in)
        K = sum(ir.dim for _, ir in self.irreps_in)
        self.K = K
        self.out_dims: list[int] = [ir.dim for _, ir in self.irreps_out]
        self.in_dims: list[int] = [ir.dim for _, ir in self.irreps_in]
        mono = _monomials(K, correlation)
        for i, (parent, last, _) in enumerate(mono):
            self.register_buffer(f"parent_{i + 2}", parent, persistent=False)
            self.register_buffer(f"last_{i + 2}", last, persistent=False)
        combos_by_order = [[(j,) for j in range(K)]] + [c for _, _, c in mono]
        self.num_monomials = sum(len(c) for c in combos_by_order)
        self.num_params: list[list[int]] = []
        self.weights = torch.nn.ParameterList()
        g_blocks: list[list[torch.Tensor]] = [[] for _ in range(correlation)]
        for o, (_, ir) in enumerate(self.irreps_out):
            counts = []
            blocks = []
            for nu in range(1, correlation + 1):
                U = symmetric_coupling_basis(self.coupling_irreps, str(ir), nu)  # [M, K..K, P]
                P = U.shape[-1]
                counts.append(P)
                combos = combos_by_order[nu - 1]
                idx = torch.tensor(combos, dtype=torch.long)  # [n_mono, nu]
                Uc = U[(slice(None),) + tuple(idx[:, j] for j in range(nu))]  # [M, n_mono, P]
                blocks.append(Uc * _multiplicities(combos).view(1, -1, 1))
                w = torch.randn(num_elements, P, self.num_channels) / max(P, 1)
                self.weights.append(torch.nn.Parameter(w))
            self.num_params.append(counts)
            # output o, order nu: [n_mono_nu, M * P_nu] (the stacked basis is block diagonal in (order,
            # parameter), so each order's monomials only meet that order's parameters)
            for nu, block in enumerate(blocks, start=1):
                n_mono, P = block.shape[1], block.shape[2]
                if P:
                    g_blocks[nu - 1].append(block.permute(1, 0, 2).reshape(n_mono, ir.dim * P))
        # per order: one basis G_nu = [n_mono_nu, sum_o M_o * P_o,nu] for all output irreps (one matrix product
        # per order in the monomial evaluation and one in its backward; a product per output irrep
        # accumulated the gradients with an extra full-size copy, ~10 % of a compiled 512-atom Si call)
        for nu, cols in enumerate(g_blocks, start=1):
            n_mono = len(combos_by_order[nu - 1])
            g = torch.cat(cols, dim=1) if cols else torch.zeros(n_mono, 0, dtype=torch.float64)
            self.register_buffer(f"G_{nu}", g.contiguous(), persistent=False)
        self.auto = strategy == "auto"
        self.strategy = self._choose_strategy(strategy, combos_by_order)
        self.eager_strategy = self._choose_strategy(strategy, combos_by_order, grouped=True)
        self.num_low_monomials = len(combos_by_order[correlation - 2]) if correlation > 1 else 0
        self.static_cost = {  # auto: the static choice's cost, against which mixed_cost sets mixed_limit
            "compiled": self._costs(combos_by_order, grouped=False)[self.strategy],
            "eager": self._costs(combos_by_order, grouped=True)[self.eager_strategy],
        } if self.auto else {}
        if {self.strategy, self.eager_strategy} & {"horner", "features"}:
            self._register_horner_buffers()
        self.mixed_limit = {mode: self._mixed_limit(mode) for mode in ("eager", "compiled")}
        """The most elements present for which a call runs ``mixed`` (0: never), per mode."""
        self.coefficient_cost = 0
        """``mixed``'s per-call cost of one present element's coefficients ``W_z U`` (per channel, units of :meth:`_costs`)."""
        if any(self.mixed_limit.values()):
            self._register_mixed_buffers(combos_by_order)
            self.coefficient_cost = 3 * sum(b.numel() for n, b in self.named_buffers() if n.startswith("H_"))
        self.node_elements = self._node_elements()

    def _costs(self, combos_by_order: list[list[tuple[int, ...]]], grouped: bool) -> dict[str, int]:
        """Operation counts per atom and channel of the static strategies, weighted by measured CPU costs.

        ``grouped``: the cost in eager mode, where Horner's top order runs on each element's atoms only
        (a data-dependent gather, so compiled graphs evaluate every element on every atom instead).
        """
        K = self.K
        sets = 1 if grouped else self.num_elements
        return {
            "horner": 6 * sets * sum(M * K**self.correlation for M in self.out_dims),
            "features": sum(M * K**self.correlation * c[-1] for M, c in zip(self.out_dims, self.num_params)),
            "monomial": 2 * (
                17 * self.num_monomials
                + sum(
                    M * sum(len(combos_by_order[nu]) * P for nu, P in enumerate(c))
                    for M, c in zip(self.out_dims, self.num_params)
                )
            ),
        }

    def _choose_strategy(self, strategy: str, combos_by_order: list[list[tuple[int, ...]]], grouped: bool = False) -> str:
        """``"auto"`` -> the cheapest static strategy (``mixed`` is weighed at each call, :meth:`mixed_cost`)."""
        if strategy == "auto":
            cost = self._costs(combos_by_order, grouped)
            strategy = min(cost, key=cost.get)
        if strategy not in _STATIC + ("mixed",):
            raise ValueError(f"unknown contraction strategy {strategy!r}")
        return strategy

    def mixed_cost(self, num_present: int, grouped: bool = False) -> int:
        """The ``mixed`` strategy's weighted operation count per atom for ``num_present`` elements (units of
        :meth:`_costs`); ``grouped`` (eager): each atom meets its own element's coefficients only.

        Calibrated on MACE-MP's layers (K = 16, correlation 3, one thread, compiled and eager): with ``3 x``
        a matmul's multiply-adds the choice matches the measured faster strategy for 1 to 4 elements.
        """
        K, low = self.K, self.num_low_monomials
        rows = (1 if grouped else num_present) * sum(self.out_dims)
        return 3 * rows * K * (low + K + 1) + 17 * low

    def _register_horner_buffers(self) -> None:
        """Coupling bases reshaped for the Horner evaluation, ``U_{o}_{nu}`` (not state)."""
        K, correlation = self.K, self.correlation
        for o, (_, ir) in enumerate(self.irreps_out):
            M = ir.dim
            for nu in range(1, correlation + 1):
                U = symmetric_coupling_basis(self.coupling_irreps, str(ir), nu)
                P = U.shape[-1]
                if nu == correlation:  # [M, K^(nu-1), k, P] -> [k, P, (M, K^(nu-1))]
                    mat = U.reshape(M, K ** (nu - 1), K, P).permute(2, 3, 0, 1).reshape(K, P, M * K ** (nu - 1))
                else:  # [P, (M, K^nu)]
                    mat = U.reshape(M * K**nu, P).T
                self.register_buffer(f"U_{o}_{nu}", mat.contiguous(), persistent=False)

    def _register_mixed_buffers(self, combos_by_order: list[list[tuple[int, ...]]]) -> None:
        """Bases of the ``mixed`` evaluation, ``H_{o}_{nu}`` (not state): order 1 ``[(M, j), P]``; order ``nu > 1``
        ``[(M, j, m), P]`` with ``m`` the sorted monomials of order ``nu - 1`` times their multiplicity."""
        K = self.K
        for o, (_, ir) in enumerate(self.irreps_out):
            M = ir.dim
            for nu in range(1, self.correlation + 1):
                U = symmetric_coupling_basis(self.coupling_irreps, str(ir), nu)  # [M, K..K, P]
                if nu == 1:
                    mat = U.reshape(M * K, -1)
                else:
                    combos = combos_by_order[nu - 2]
                    idx = torch.tensor(combos, dtype=torch.long)  # [n_mono, nu - 1]
                    rows = U[(slice(None),) + tuple(idx[:, j] for j in range(nu - 1))]  # [M, n_mono, K, P]
                    rows = rows * _multiplicities(combos).view(1, -1, 1, 1)
                    mat = rows.permute(0, 2, 1, 3).reshape(M * K * len(combos), -1)  # (M, j, m)
                self.register_buffer(f"H_{o}_{nu}", mat.contiguous(), persistent=False)

    def _node_elements(self) -> int:
        """Elements per atom of the largest intermediate of :meth:`forward` in eager mode (blocking over atoms)."""
        C, K = self.num_channels, self.K
        widths = [0]
        if self.eager_strategy in ("horner", "features"):
            top = max(K * p[-1] for p in self.num_params) if self.eager_strategy == "features" else 0
            widths.append(C * max(top, max(M * K ** (self.correlation - 1) for M in self.out_dims)))
        elif self.eager_strategy == "monomial":
            widths.append(C * self.num_monomials)
        if self.mixed_limit["eager"]:  # Z: [sum(M) x K] per atom and channel (eager groups atoms by element)
            widths.append(C * (self.num_low_monomials + 2 * sum(self.out_dims) * K))
        return max(widths)

    def _mixed_limit(self, mode: str) -> int:
        """The most elements present for which ``mixed`` runs in ``mode`` (``"eager"`` / ``"compiled"``)."""
        if not self.auto:  # present elements are a subset of the model's
            return self.num_elements if self.strategy == "mixed" else 0
        static = MIXED_SHARE[mode] * self.static_cost[mode]
        grouped = mode == "eager"
        return sum(1 for s in range(1, self.num_elements + 1) if self.mixed_cost(s, grouped) < static)

    def _mixed_pays(self, num_present: int, num_atoms: int) -> bool:
        """Eager ``auto``: whether the coefficients of ``num_present`` elements cost less than ``mixed`` saves on
        ``num_atoms`` atoms (a molecule with many elements keeps the static strategy)."""
        if not self.auto:
            return True
        saving = self.static_cost["eager"] - self.mixed_cost(1, grouped=True)
        return num_present * self.coefficient_cost < num_atoms * saving

    def weight(self, o: int, nu: int) -> torch.nn.Parameter:
        """Weights ``[num_elements, P, C]`` of output irrep ``o`` and order ``nu``."""
        return self.weights[o * self.correlation + nu - 1]

    def basis(self, o: int, nu: int) -> torch.Tensor:
        """The coupling basis ``U`` of output irrep ``o`` and order ``nu`` as ``[M, K.., P]``."""
        _, ir = self.irreps_out[o]
        return symmetric_coupling_basis(self.coupling_irreps, str(ir), nu)

    def forward(self, x: torch.Tensor, element: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        """``x [N, irreps_in.dim]``, ``element [N]`` -> ``[N, irreps_out.dim]``.

        ``present``: ``[S]`` element indices, a superset of ``element``'s values (the ``mixed`` strategy
        evaluates these elements' weights only); found from ``element`` when omitted.
        """
        N = x.shape[0]
        C = self.num_channels
        parts = []
        start = 0
        for d in self.in_dims:  # mul_ir layout -> [N, C, K]
            parts.append(x[:, start : start + C * d].reshape(N, C, d))
            start += C * d
        a = torch.cat(parts, dim=-1)  # [N, C, K]
        compiling = torch.compiler.is_compiling()
        strategy = self.strategy if compiling else self.eager_strategy
        limit = self.mixed_limit["compiled" if compiling else "eager"]
        if limit:
            if present is None:  # a compiled graph without the batch's species: every element
                present = torch.arange(self.num_elements, device=x.device) if compiling else torch.unique(element)
            if present.shape[0] <= limit and (compiling or self._mixed_pays(present.shape[0], N)):
                return self._mixed(a, element, present)
        if strategy in ("horner", "features"):
            return self._horner(a, element, strategy, grouped=not compiling)
        return self._monomial(a, element)

    def _horner(self, a: torch.Tensor, element: torch.Tensor, strategy: str, grouped: bool) -> torch.Tensor:
        """``((c_nu A + c_{nu-1}) A + ..) A``; the top order per element or features-first.

        ``grouped``: the per-element top order runs on that element's atoms only (eager); otherwise on
        every atom, masked (no data-dependent shapes, for compiled graphs).
        """
        N, C, K = a.shape
        a_c = a.transpose(0, 1)  # [C, N, K]
        outs = []
        for o, M in enumerate(self.out_dims):
            nu = self.correlation
            U_top = getattr(self, f"U_{o}_{nu}").to(a.dtype)  # [K, P, Q]
            W_top = self.weight(o, nu)  # [E, P, C]
            Kt, P, Q = U_top.shape
            if strategy == "features":  # z[n,c,k,p] = A[n,c,k] W[z_n,p,c], one matmul with U
                z = a.unsqueeze(-1) * W_top[element].transpose(1, 2).unsqueeze(2)
                t = (z.reshape(N * C, Kt * P) @ U_top.reshape(Kt * P, Q)).reshape(N, C, Q)
            elif grouped and self.num_elements > 1:
                t = self._top_by_element(a_c, element, W_top, U_top)
            else:
                t = torch.zeros(N, C, Q, dtype=a.dtype, device=a.device)
                for e in range(self.num_elements):
                    c_e = torch.einsum("pc,kpq->ckq", W_top[e], U_top)  # [C, K, Q]
                    t_e = torch.bmm(a_c, c_e).transpose(0, 1)  # [N, C, Q]
                    t = t_e if self.num_elements == 1 else t + t_e * (element == e).to(a.dtype).view(N, 1, 1)
            for n in range(nu - 1, 0, -1):
                U_n = getattr(self, f"U_{o}_{n}").to(a.dtype)  # [P_n, M*K^n]
                w_n = self.weight(o, n)[element].transpose(1, 2)  # [N, C, P_n]
                if U_n.shape[0] == 1:
                    # One path (P_n = 1, e.g. order 1): an outer product, written as a broadcast
                    # product (bitwise equal to the [N*C, 1] @ [1, M*K^n] matmul). torch.compile:
                    # inductor's CPU decomposition of a matmul with inner size 1 guards on
                    # ``N*C + M*K^n <= 32``, which bounds the atom count of the compiled graph
                    # (e.g. N <= 10) and forces a recompile for larger systems, see docs/inference.md.
                    t = t + w_n * U_n.reshape(1, 1, -1)
                elif U_n.shape[0] > 1:
                    t = t + (w_n.reshape(N * C, -1) @ U_n).reshape(N, C, -1)
                t = (t.reshape(N, C, M * K ** (n - 1), K) * a.unsqueeze(2)).sum(-1)
            outs.append(t.reshape(N, C * M))
        return torch.cat(outs, dim=-1)

    def _top_by_element(self, a_c: torch.Tensor, element: torch.Tensor, W_top: torch.Tensor, U_top: torch.Tensor) -> torch.Tensor:
        """Horner's top order ``[N, C, Q]``, each element's coefficients applied to its own atoms only."""
        C, N, _ = a_c.shape
        t = a_c.new_zeros(N, C, U_top.shape[2])
        for e in torch.unique(element).tolist():
            rows = (element == e).nonzero().squeeze(1)
            c_e = torch.einsum("pc,kpq->ckq", W_top[e], U_top)  # [C, K, Q]
            t = t.index_copy(0, rows, torch.bmm(a_c.index_select(1, rows), c_e).transpose(0, 1))
        return t

    def _monomial(self, a: torch.Tensor, element: torch.Tensor) -> torch.Tensor:
        """Distinct monomials of ``A`` times the stacked basis ``G``, then the atom's weights."""
        N, C, _ = a.shape
        # monomials stored monomial-major ([n_mono, N*C]) so that gathers and their backward act on whole rows
        a_t = a.permute(2, 0, 1).reshape(self.K, N * C)
        monos = [a_t]
        current = a_t
        for nu in range(2, self.correlation + 1):
            parent = getattr(self, f"parent_{nu}")
            last = getattr(self, f"last_{nu}")
            current = current.index_select(0, parent) * a_t.index_select(0, last)
            monos.append(current)
        # one matmul per order (no concatenation of the monomials: its backward and double backward
        # would allocate and fill zero tensors of the full [n_mono, N*C] size)
        parts: list[list[torch.Tensor]] = [[] for _ in self.out_dims]
        for nu, m in enumerate(monos, start=1):
            G = getattr(self, f"G_{nu}").to(a.dtype)  # [n_mono_nu, sum_o M_o * P_o,nu]
            if G.shape[1] == 0:
                continue
            present = [o for o in range(len(self.out_dims)) if self.num_params[o][nu - 1]]
            # split (not slicing): its backward concatenates, no zero-filled full-size gradients
            blocks = (G.T @ m).split([self.out_dims[o] * self.num_params[o][nu - 1] for o in present])
            for o, block in zip(present, blocks):
                M, P = self.out_dims[o], self.num_params[o][nu - 1]
                B = block.reshape(M, P, N, C)
                W = self.weight(o, nu)  # [E, P_nu, C]
                if self.num_elements == 1:
                    parts[o].append((B * W[0].unsqueeze(1)).sum(1))  # [M, N, C]
                else:
                    parts[o].append((B * W[element].permute(1, 0, 2)).sum(1))
        outs = []
        for M, part in zip(self.out_dims, parts):
            out = a.new_zeros(M, N, C) if not part else functools.reduce(torch.add, part)
            outs.append(out.permute(1, 2, 0).reshape(N, C * M))
        return torch.cat(outs, dim=-1)

    def _mixed(self, a: torch.Tensor, element: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Monomials up to order ``nu - 1``, one Horner step, each present element's coefficients ``W_z U``.

        Eager calls with several elements present sort the atoms by element and give each element's atoms its own
        coefficients only; a compiled graph (the element count is a symbolic size there) evaluates every present
        element's coefficients on every atom and keeps the atom's own.
        """
        N, C, K = a.shape
        a_ck = a.permute(1, 2, 0)  # [C, K, N]
        if present.shape[0] > 1 and N > 0 and not torch.compiler.is_compiling():
            y = self._mixed_grouped(a_ck, element, present)
        else:
            S, sum_m = present.shape[0], sum(self.out_dims)
            coeffs = [self._mixed_coefficients(nu, present, a.dtype) for nu in range(1, self.correlation + 1)]
            y = self._mixed_rows(coeffs, self._low_monomials(a_ck.contiguous())).view(C, S, sum_m, N)
            if S == 1:  # every atom has the one element present
                y = y[:, 0]
            else:
                mask = (element.unsqueeze(0) == present.unsqueeze(1)).to(a.dtype)  # [S, N]
                y = (y * mask.view(1, S, 1, N)).sum(1)
        outs, start = [], 0
        for M in self.out_dims:  # [C, sum_m, N] -> mul_ir
            outs.append(y[:, start : start + M].permute(2, 0, 1).reshape(N, C * M))
            start += M
        return torch.cat(outs, dim=-1)

    def _mixed_grouped(self, a_ck: torch.Tensor, element: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """:meth:`_mixed`'s ``[C, sum_m, N]`` with each element's coefficients applied to its own atoms only (eager)."""
        present = torch.sort(present).values
        order = torch.argsort(element, stable=True)  # atoms grouped by element, ascending like ``present``
        counts = torch.bincount(element, minlength=self.num_elements)[present].tolist()
        a_sorted = a_ck.index_select(2, order)
        monos = [m.split(counts, dim=2) for m in self._low_monomials(a_sorted)]
        coeffs = [self._mixed_coefficients(nu, present, a_ck.dtype) for nu in range(1, self.correlation + 1)]
        per_element = [c.view(c.shape[0], len(counts), -1, c.shape[2]).unbind(1) for c in coeffs]
        parts = [
            self._mixed_rows([c[s] for c in per_element], [m[s] for m in monos])
            for s, n in enumerate(counts) if n
        ]
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.shape[0], device=order.device)
        return torch.cat(parts, dim=2).index_select(2, inverse)

    def _low_monomials(self, a_ck: torch.Tensor) -> list[torch.Tensor]:
        """The distinct monomials of orders ``1 .. correlation - 1``, each ``[C, n_mono, N]`` from ``a_ck [C, K, N]``."""
        monos = [a_ck]
        for nu in range(2, self.correlation):
            parent, last = getattr(self, f"parent_{nu}"), getattr(self, f"last_{nu}")
            monos.append(monos[-1].index_select(1, parent) * a_ck.index_select(1, last))
        return monos

    def _mixed_rows(self, coeffs: list[torch.Tensor], monos: list[torch.Tensor]) -> torch.Tensor:
        """``sum_j A_j (sum_m A_m T_{m,j} + ..) + T_1 A``: coefficients ``coeffs[nu - 1]`` (``[C, R, K]`` for order 1,
        ``[C, R x K, n_mono]`` above), monomials ``monos[nu - 1]`` ``[C, n_mono, n]`` -> ``[C, R, n]``."""
        a_ck = monos[0]
        C, K, n = a_ck.shape
        z = None  # [C, R x K, n]
        for t, mono in zip(coeffs[1:], monos):
            z = torch.bmm(t, mono) if z is None else torch.baddbmm(z, t, mono)
        y = torch.bmm(coeffs[0], a_ck)
        if z is not None:
            y = y + (z.view(C, coeffs[0].shape[1], K, n) * a_ck.unsqueeze(1)).sum(2)  # explicit sizes: n may be 0
        return y

    def _mixed_coefficients(self, nu: int, present: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``T = W_z U`` of order ``nu`` for the present elements: ``[C, S x sum(M) x K, n_mono]`` (``nu > 1``) or
        ``[C, S x sum(M), K]`` (``nu = 1``)."""
        S, C, K = present.shape[0], self.num_channels, self.K
        cols = K if nu == 1 else math.comb(K + nu - 2, nu - 1)  # monomials of order nu - 1 (explicit: S may be 0)
        blocks = []
        for o, M in enumerate(self.out_dims):
            H = getattr(self, f"H_{o}_{nu}").to(dtype)  # [rows, P]
            w = self.weight(o, nu)[present]  # [S, P, C]
            blocks.append(torch.einsum("spc,rp->csr", w, H).reshape(C, S, M, H.shape[0] // M))
        t = torch.cat(blocks, dim=2)  # [C, S, sum_m, rows / M]
        rows = S * sum(self.out_dims) * (1 if nu == 1 else K)
        return t.reshape(C, rows, cols)


def uses_species(model: torch.nn.Module) -> bool:
    """Whether ``model`` has a contraction that may use the batch's species (compiled callers add them)."""
    return any(isinstance(m, SymmetricContraction) and m.mixed_limit["compiled"] for m in model.modules())
