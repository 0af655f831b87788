"""cuEquivariance backend: the model's tensor products and linears evaluated by cuequivariance-torch.

Four module kinds are swapped in place by :func:`apply_cueq` (everything else stays e3nn/torch):

=========================================  ==============================================================
e3nn module                                cuEquivariance module
=========================================  ==============================================================
``o3.Linear`` (all equivariant linears)     :class:`CueqLinear` -> ``cuet.Linear``
``ElementLinear.tp`` (FCTP with one-hot)    :class:`CueqFullyConnected` -> ``cuet.FullyConnectedTensorProduct``
``ChannelwiseConvolution``                  :class:`CueqConvolution` -> ``cuet.ChannelWiseTensorProduct``
                                            (gather by sender and scatter-sum by receiver fused)
``SymmetricContraction``                    :class:`CueqSymmetricContraction` -> ``cuet.SegmentedPolynomial``
                                            of ``cue.descriptors.symmetric_contraction``
=========================================  ==============================================================

Parameters stay in the e3nn layout and under the same names (state dicts of both backends are
identical, so a conversion is lossless by construction). The cuEquivariance weights are formed
inside ``forward`` from them by exact, fixed maps computed once per irreps signature (float64):

* linears, fully connected and channel-wise tensor products: one factor per path
  (``w_cueq = s_path * w_e3nn``; it absorbs the two libraries' path normalisations and the
  Clebsch-Gordan phase of each path). The factor is measured by evaluating both libraries on the
  same random input with only that path's weights set, and the fit residual is checked (< 1e-12).
* symmetric contraction: cuEquivariance's basis differs from ours (:mod:`mlip.nn.coupling`);
  ``W_cueq = T W_ours`` with ``T`` the least-squares solution of ``F T = G``, where ``F`` / ``G``
  are both bases evaluated on random inputs (residual checked, < 1e-10; measured ~1e-15).

Irreps use ``cue.O3`` (the same real basis as e3nn; per-path CG signs are absorbed above) and the
``mul_ir`` layout of e3nn at every interface. On CPU (or CUDA without ``cuequivariance_ops_torch``)
every module runs cuEquivariance's pure-PyTorch ``"naive"`` method. On CUDA with the ops package the
fused kernels are used: ``fused_tp`` for linears and fully connected products, ``uniform_1d`` for the
channel-wise product and the symmetric contraction (when their segments are uniform, else naive).
The CUDA path could not be run where this was written (no GPU); it is selected by device and import
checks only.

cuEquivariance's modules are kept out of the module tree (their float64 coefficient buffers must
not be cast to float32 by ``.to()`` nor saved); each wrapper moves them to its device in ``_apply``.
"""

from __future__ import annotations

import copy
import functools
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
                          "pip install 'mlip[cueq]' (fused GPU kernels: 'mlip[cuda]')") from None
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


# ---------------------------------------------------------------------------------- linears
@functools.lru_cache(maxsize=None)
def _linear_scale(irreps_in: str, irreps_out: str) -> torch.Tensor:
    _, cuet = _cue()
    ref = o3.Linear(o3.Irreps(irreps_in), o3.Irreps(irreps_out)).to(torch.float64)
    lin = cuet.Linear(cue_irreps(irreps_in), cue_irreps(irreps_out), layout=_cue()[0].mul_ir,
                      internal_weights=False, shared_weights=True, method="naive")
    if lin.weight_numel != ref.weight_numel:
        raise RuntimeError(f"linear {irreps_in} -> {irreps_out}: {lin.weight_numel} != {ref.weight_numel} weights")
    x = torch.randn(7, o3.Irreps(irreps_in).dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return _path_scales(
        lambda w: torch.func.functional_call(ref, {"weight": w}, (x,)),
        lambda w: lin(x, weight=w.unsqueeze(0)),
        _instruction_slices(ref.instructions),
        ref.weight_numel,
        f"linear {irreps_in} -> {irreps_out}",
    )


class CueqLinear(_CueModule):
    """``o3.Linear`` evaluated by ``cuet.Linear``; ``weight`` (e3nn layout) is shared with the original."""

    fast_method = "fused_tp"

    def __init__(self, linear: o3.Linear):
        super().__init__()
        cue, cuet = _cue()
        if linear.bias.numel() != 0:
            raise NotImplementedError("o3.Linear with biases has no cuEquivariance mapping here")
        _adopt(self, linear)
        self.irreps_in, self.irreps_out = linear.irreps_in, linear.irreps_out
        self.weight_numel = linear.weight_numel
        i, o = cue_irreps(self.irreps_in), cue_irreps(self.irreps_out)

        def make(method: str, math_dtype: torch.dtype | None) -> torch.nn.Module:
            return cuet.Linear(i, o, layout=cue.mul_ir, internal_weights=False, shared_weights=True,
                               method=method, math_dtype=math_dtype)

        self._setup(make, {"scale": _linear_scale(str(self.irreps_in), str(self.irreps_out))},
                    (str(self.irreps_in), str(self.irreps_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight_numel == 0:
            return x.new_zeros(x.shape[:-1] + (self.irreps_out.dim,))
        return self.impl(x)(x, weight=(self.weight * self._const["scale"]).unsqueeze(0))


# ------------------------------------------------------------- fully connected (element linear)
@functools.lru_cache(maxsize=None)
def _fctp_scale(irreps_1: str, irreps_2: str, irreps_out: str) -> torch.Tensor:
    cue, cuet = _cue()
    # no einsum optimisation: opt_einsum_fx would fold Wigner-3j constants in float32 (not refreshable)
    ref = _float64_reference(o3.FullyConnectedTensorProduct(irreps_1, irreps_2, irreps_out, _optimize_einsums=False))
    tp = cuet.FullyConnectedTensorProduct(cue_irreps(irreps_1), cue_irreps(irreps_2), cue_irreps(irreps_out),
                                          layout=cue.mul_ir, internal_weights=False, shared_weights=True,
                                          method="naive")
    if tp.weight_numel != ref.weight_numel:
        raise RuntimeError(f"FCTP {irreps_1} x {irreps_2}: {tp.weight_numel} != {ref.weight_numel} weights")
    gen = torch.Generator().manual_seed(1)
    x1 = torch.randn(7, o3.Irreps(irreps_1).dim, generator=gen, dtype=torch.float64)
    x2 = torch.randn(7, o3.Irreps(irreps_2).dim, generator=gen, dtype=torch.float64)
    return _path_scales(
        lambda w: torch.func.functional_call(ref, {"weight": w}, (x1, x2)),
        lambda w: tp(x1, x2, weight=w.unsqueeze(0)),
        _instruction_slices(ref.instructions),
        ref.weight_numel,
        f"fully connected {irreps_1} x {irreps_2} -> {irreps_out}",
    )


class CueqFullyConnected(_CueModule):
    """e3nn ``FullyConnectedTensorProduct`` (shared internal weights) via ``cuet.FullyConnectedTensorProduct``."""

    fast_method = "fused_tp"

    def __init__(self, tp: o3.FullyConnectedTensorProduct):
        super().__init__()
        cue, cuet = _cue()
        _adopt(self, tp)
        self.irreps_in1, self.irreps_in2, self.irreps_out = tp.irreps_in1, tp.irreps_in2, tp.irreps_out
        a, b, c = (cue_irreps(x) for x in (self.irreps_in1, self.irreps_in2, self.irreps_out))

        def make(method: str, math_dtype: torch.dtype | None) -> torch.nn.Module:
            return cuet.FullyConnectedTensorProduct(a, b, c, layout=cue.mul_ir, internal_weights=False,
                                                    shared_weights=True, method=method, math_dtype=math_dtype)

        scale = _fctp_scale(str(self.irreps_in1), str(self.irreps_in2), str(self.irreps_out))
        self._setup(make, {"scale": scale}, (str(self.irreps_in1), str(self.irreps_in2), str(self.irreps_out)))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.impl(x1)(x1, x2, weight=(self.weight * self._const["scale"]).unsqueeze(0))


# ------------------------------------------------------------------------- convolution
def _channelwise_module(irreps_node: str, irreps_sh: str, target: tuple[str, ...], method: str, math_dtype=None):
    cue, cuet = _cue()
    filt = [cue.O3(o3.Irrep(s).l, o3.Irrep(s).p) for s in target]
    return cuet.ChannelWiseTensorProduct(cue_irreps(irreps_node), cue_irreps(irreps_sh), filt, layout=cue.mul_ir,
                                         shared_weights=False, internal_weights=False, method=method,
                                         math_dtype=math_dtype)


@functools.lru_cache(maxsize=None)
def _channelwise_scale(irreps_node: str, irreps_sh: str, target: tuple[str, ...]) -> torch.Tensor:
    from mlip.nn.convolution import ChannelwiseConvolution

    conv = ChannelwiseConvolution(irreps_node, irreps_sh, "+".join(target))
    # the same e3nn product without einsum optimisation (opt_einsum_fx can fold Wigner-3j constants
    # into float32 buffers that refresh_wigner_buffers cannot restore)
    ref = _float64_reference(
        o3.TensorProduct(conv.tp.irreps_in1, conv.tp.irreps_in2, conv.tp.irreps_out,
                         instructions=[(i.i_in1, i.i_in2, i.i_out, i.connection_mode, i.has_weight) for i in conv.tp.instructions],
                         shared_weights=False, internal_weights=False, _optimize_einsums=False)
    )
    tp = _channelwise_module(irreps_node, irreps_sh, target, "naive")
    if str(cue_irreps(conv.irreps_out)) != str(tp.irreps_out) or tp.weight_numel != ref.weight_numel:
        raise RuntimeError(f"channel-wise product {irreps_node} x {irreps_sh}: output irreps or weights differ "
                           f"({conv.irreps_out} vs {tp.irreps_out})")
    gen = torch.Generator().manual_seed(2)
    x1 = torch.randn(5, o3.Irreps(irreps_node).dim, generator=gen, dtype=torch.float64)
    x2 = torch.randn(5, o3.Irreps(irreps_sh).dim, generator=gen, dtype=torch.float64)
    return _path_scales(
        lambda w: ref(x1, x2, w.expand(5, -1)),
        lambda w: tp(x1, x2, weight=w.expand(5, -1)),
        [sl for _, sl in conv.path_slices()],
        ref.weight_numel,
        f"channel-wise product {irreps_node} x {irreps_sh}",
    )


class CueqConvolution(_CueModule):
    """:class:`~mlip.nn.convolution.ChannelwiseConvolution` through ``cuet.ChannelWiseTensorProduct``.

    Same interface; the per-edge weights arrive in e3nn's ``uvu`` layout (from the radial MLP) and are
    rescaled per path. Gather by sender and scatter-sum by receiver happen inside the cuEquivariance
    call (``indices_1`` / ``indices_out``). ``tp`` (the e3nn module) is kept for the state-dict keys
    and :meth:`path_slices` only; it is not evaluated.
    """

    fast_method = "uniform_1d"

    def __init__(self, conv: torch.nn.Module):
        super().__init__()
        self.irreps_node, self.irreps_sh, self.irreps_out = conv.irreps_node, conv.irreps_sh, conv.irreps_out
        self.weight_numel = conv.weight_numel
        self.tp = conv.tp
        self._path_slices = conv.path_slices()
        target = tuple(sorted({str(ir) for _, ir in conv.irreps_out}))
        node, sh = str(self.irreps_node), str(self.irreps_sh)

        def make(method: str, math_dtype: torch.dtype | None) -> torch.nn.Module:
            return _channelwise_module(node, sh, target, method, math_dtype)

        self._setup(make, {"scale": _channelwise_scale(node, sh, target)}, (node, sh, target))

    def path_slices(self) -> list[tuple[tuple[int, int, int], slice]]:
        """``((l1, l2, l3), slice)`` of every path's entries in the (e3nn-layout) weight vector."""
        return list(self._path_slices)

    def forward(
        self,
        node_feats: torch.Tensor,
        edge_attrs: torch.Tensor,
        weights: torch.Tensor,
        edge_index: torch.Tensor,
        edge_gate: torch.Tensor | None = None,
    ) -> torch.Tensor:
        w = weights * self._const["scale"]
        if edge_gate is not None:  # the message is linear in the weights
            w = w * edge_gate.unsqueeze(-1)
        return self.impl(node_feats)(
            node_feats, edge_attrs, weight=w, indices_1=edge_index[0], indices_out=edge_index[1],
            size_out=node_feats.shape[0],
        )


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

    def forward(self, x: torch.Tensor, element: torch.Tensor) -> torch.Tensor:
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


# ----------------------------------------------------------------------------- swapping
def apply_cueq(model: torch.nn.Module) -> torch.nn.Module:
    """Swap, in place, every e3nn tensor product / linear of ``model`` for its cuEquivariance module."""
    from mlip.nn.contraction import SymmetricContraction
    from mlip.nn.convolution import ChannelwiseConvolution
    from mlip.nn.layers import ElementLinear

    def visit(module: torch.nn.Module) -> None:
        for name, child in list(module.named_children()):
            if type(child) is o3.Linear:
                setattr(module, name, CueqLinear(child))
            elif isinstance(child, ElementLinear):
                child.tp = CueqFullyConnected(child.tp)
            elif isinstance(child, ChannelwiseConvolution):
                setattr(module, name, CueqConvolution(child))
            elif isinstance(child, SymmetricContraction):
                setattr(module, name, CueqSymmetricContraction(child))
            else:
                visit(child)

    visit(model)
    return model
