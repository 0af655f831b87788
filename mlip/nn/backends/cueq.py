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

import functools

import torch
from e3nn import o3

from mlip.nn.backends.cueq_base import (
    _adopt,
    _cue,
    _CueModule,
    _float64_reference,
    _instruction_slices,
    _path_scales,
    cuda_kernels_available,
    cue_irreps,
)
from mlip.nn.backends.cueq_contraction import CueqSymmetricContraction

__all__ = ["CueqConvolution", "CueqFullyConnected", "CueqLinear", "CueqSymmetricContraction", "apply_cueq",
           "cuda_kernels_available", "cue_irreps"]


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
        num_receivers: int | None = None,
        layout: object = None,
    ) -> torch.Tensor:
        """``layout`` (neighbour slots) is accepted for the interface and not used: cuEquivariance gathers
        and scatters inside its kernel."""
        w = weights * self._const["scale"]
        if edge_gate is not None:  # the message is linear in the weights
            w = w * edge_gate.unsqueeze(-1)
        return self.impl(node_feats)(
            node_feats, edge_attrs, weight=w, indices_1=edge_index[0], indices_out=edge_index[1],
            size_out=node_feats.shape[0] if num_receivers is None else num_receivers,
        )


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
