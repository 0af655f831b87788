"""Energy + forces (+ stress) evaluation of a model for inference, eager or ``torch.compile``'d.

Two evaluation paths share one output format (``energy [B]``, ``node_energy [N]``, ``forces [N,3]``
and, with ``compute_stress``, ``stress``/``virials [B,3,3]``; units eV, eV/A, eV/A^3, eV):

* :func:`evaluate` -- the eager path: the model's own ``forward(batch, compute_forces=True, ...)``.
* :class:`CompiledPotential` (built by :func:`compile_model`) -- the compiled path. Only the
  *energy* function is handed to ``torch.compile``; forces and stress are taken with
  ``torch.autograd.grad`` outside it. AOTAutograd traces the backward of the compiled region
  ahead of time, so the backward pass (the force computation) runs as a compiled inductor graph
  too: the energy+forces(+stress) evaluation is one compiled forward graph and one compiled
  backward graph, with no graph break. (Calling ``torch.autograd.grad`` *inside* the compiled function graph-breaks unless
  the global ``torch._dynamo.config.trace_autograd_ops`` is switched on, which library code must
  not do; see docs/inference.md.)

  Stress uses the strain trick outside the model: positions and cell are multiplied by
  ``(1 + eps)`` with a symmetric ``eps`` that requires grad, and ``virials = -dE/d eps``,
  ``stress = (1/V) dE/d eps`` (ASE sign, docs/architecture.md).

Dynamic shapes, not padding: before every call the atom dimension (``positions``, ``numbers``,
``batch``) and the edge dimension (``edge_index`` dim 1, ``unit_shifts`` dim 0) are marked dynamic
with ``torch._dynamo.maybe_mark_dynamic``, so the graph is compiled once with symbolic sizes and a
different number of atoms or edges does not recompile. (Sizes 0 and 1 are specialised by dynamo
and do recompile once, e.g. an isolated atom with no edges.) Inductor gets its usual
decomposition table with the ``aten.mm`` entry replaced (:func:`inductor_decompositions`): its
CPU rewrite of ``[M, 1] @ [1, P]`` guards on ``M + P <= 32`` and so bounded a graph's atom count.
:attr:`CompiledPotential.num_compiles` counts the graphs compiled for this instance.
The convolution's neighbour slots (:func:`mlip.nn.convolution.neighbour_slots`, ``[N, D]`` with ``D`` the
largest in-degree, also dynamic) are made before the call: their width is data, which a graph cannot
compute without a break. So are the batch's species (:func:`mlip.nn.contraction.with_species`, ``[S]``,
dynamic; the ``mixed`` symmetric contraction evaluates only these elements' weights), for models that can use
them: one species, up to the contraction's ``mixed_limit`` and beyond it are separate graphs (size-1
specialisation and the limit's guard).

No torch state is changed: no default dtype, no dynamo config. On a CPU the C allocator is told once to
keep large blocks on its heap (:func:`mlip.allocator.keep_large_blocks`): inductor's buffers are hundreds of
MB, and as fresh mmaps they page-fault on every call (about half the time of a 512-atom Si call).
``MLIP_MALLOC_TUNING=0`` leaves the allocator alone.
"""

from __future__ import annotations

import itertools
import types
from typing import Any, Callable

import torch

from mlip.allocator import keep_large_blocks
from mlip.data import keys
from mlip.device import model_device
from mlip.nn.contraction import uses_species, with_species
from mlip.nn.convolution import neighbour_slots, uses_neighbour_slots
from mlip.nn.grad_output import energy_gradients, strain, zero_displacement

NODE_KEYS: tuple[str, ...] = keys.ATOM_DIM_KEYS
"""Batch entries whose dimension 0 is the atom count."""
EDGE_DIMS: tuple[tuple[str, int], ...] = keys.EDGE_DIMS
"""Batch entries with an edge-count dimension, and which dimension."""


def evaluate(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], compute_stress: bool = False
) -> dict[str, torch.Tensor]:
    """Eager energy, node energies, forces (and stress/virials) from the model's own forward.

    Returns detached tensors: ``energy [B]`` (eV), ``node_energy [N]`` (eV), ``forces [N,3]`` (eV/A),
    and with ``compute_stress`` ``stress [B,3,3]`` (eV/A^3) and ``virials [B,3,3]`` (eV).
    """
    out = model(batch, compute_forces=True, compute_stress=compute_stress, training=False)
    keys = ["energy", "node_energy", "forces"] + (["stress", "virials"] if compute_stress else [])
    return {key: out[key].detach() for key in keys if out.get(key) is not None}


def strain_batch(
    batch: dict[str, torch.Tensor], displacement: torch.Tensor
) -> dict[str, torch.Tensor]:
    """A copy of ``batch`` with positions and cell strained by ``1 + sym(displacement)``.

    ``displacement [B,3,3]`` is usually zero and requires grad, so ``dE/d displacement`` is the
    strain derivative at zero strain. Positions are row vectors: ``r' = r (1 + eps)``.
    """
    strained = dict(batch)
    strained[keys.POSITIONS], strained[keys.CELL] = strain(
        batch[keys.POSITIONS], batch[keys.CELL], batch[keys.BATCH], displacement
    )
    return strained


_CODE_COPIES = itertools.count()


def fresh_code(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` on a code object of its own (same globals, defaults and closure).

    Dynamo keeps compiled graphs, guards and its recompilation limit (8) per code object, so closures or
    methods made from one ``def`` for different models would see each other's graphs: extra
    recompilations, and from the ninth model a silent fall-back to eager. Every compiled potential and
    training step compiles a fresh copy instead.
    """
    code = fn.__code__.replace(co_name=f"{fn.__code__.co_name}_{next(_CODE_COPIES)}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


def _energy_function(model: torch.nn.Module) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """``f(batch, displacement) -> (energy [B], node_energy [N])`` of a strained batch (own code object)."""

    def energy(batch: dict[str, torch.Tensor], displacement: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(strain_batch(batch, displacement), compute_forces=False, compute_stress=False, training=False)
        return out[keys.ENERGY], out[keys.NODE_ENERGY]

    return fresh_code(energy)


def energy_forces_stress(
    energy_fn: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    batch: dict[str, torch.Tensor],
    compute_stress: bool = False,
) -> dict[str, torch.Tensor]:
    """Run ``energy_fn`` and differentiate it: forces ``-dE/dr``, virials ``-dE/d eps``, stress ``virials/-V``.

    Works for any energy function of a (strained) batch, compiled or not. Returns detached tensors
    in the format of :func:`evaluate`.
    """
    positions = batch[keys.POSITIONS].detach().requires_grad_(True)
    num_graphs = batch[keys.CELL].shape[0]
    # The strain derivative is always taken (it costs one small extra reduction in the backward):
    # a compiled energy function then sees the same inputs with or without stress, one graph.
    displacement = zero_displacement(num_graphs, positions)
    inputs = dict(batch)
    inputs[keys.POSITIONS] = positions
    _mark_dynamic(inputs)
    with torch.enable_grad():
        energy, node_energy = energy_fn(inputs, displacement)
        grads = energy_gradients(energy, positions, displacement, batch[keys.CELL], batch[keys.PBC])
    out = {
        keys.ENERGY: energy.detach(), keys.NODE_ENERGY: node_energy.detach(), keys.FORCES: grads[keys.FORCES].detach()
    }
    if compute_stress:
        out[keys.VIRIALS] = grads[keys.VIRIALS].detach()
        out[keys.STRESS] = grads[keys.STRESS].detach()
    return out


def _mark_dynamic(batch: dict[str, torch.Tensor]) -> None:
    """Mark the atom and edge dimensions dynamic (no-op outside torch.compile)."""
    for key in NODE_KEYS:
        if key in batch:
            torch._dynamo.maybe_mark_dynamic(batch[key], 0)
    for key, dim in EDGE_DIMS:
        if key in batch:
            torch._dynamo.maybe_mark_dynamic(batch[key], dim)


def _mm_without_size_guard(self: torch.Tensor, other: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    """Inductor's ``aten.mm`` decomposition, except for CPU outer products of symbolic size.

    On CPU inductor rewrites ``[M, 1] @ [1, P]`` as ``self * other`` only while
    ``M + P <= 32``, and with a symbolic ``M`` (atoms, edges) that test becomes a shape guard
    (``N + 16 <= 32`` for the backward of a 16 -> 1 readout layer), so the graph compiled for
    one system size is recompiled for the other side of the bound. Here such an ``mm`` stays an
    ``mm`` for every size (``NotImplemented`` = no decomposition; numerically the same outer product).
    """
    from torch._inductor import decomposition
    from torch.fx.experimental.symbolic_shapes import is_concrete_int, statically_known_true

    if (
        self.device.type == "cpu"
        and statically_known_true(self.size(-1) == 1)
        and not all(is_concrete_int(size) for size in (*self.shape, *other.shape))
    ):
        return NotImplemented
    return decomposition.mm(self, other, *args, **kwargs)  # inductor's own (its table entry)


def inductor_decompositions() -> dict[Any, Callable[..., Any]]:
    """Inductor's decomposition table with :func:`_mm_without_size_guard` for ``aten.mm``.

    Passed per compilation (``compile_fx(..., decompositions=...)``); no global config is changed.
    """
    from torch._inductor.decomposition import select_decomp_table

    table = dict(select_decomp_table())
    table[torch.ops.aten.mm.default] = _mm_without_size_guard
    return table


def compiler_backend(backend: str = "inductor", mode: str | None = None) -> Callable[..., Any]:
    """The dynamo backend ``(graph_module, example_inputs) -> callable`` used by mlip's compiled paths.

    ``inductor`` gets :func:`inductor_decompositions` for this compilation only (and ``mode``'s option set);
    any other name is looked up in dynamo's registry (``aot_eager``, ``eager``, ...).
    """
    if backend != "inductor":
        return torch._dynamo.lookup_backend(backend)
    from torch._inductor import list_mode_options
    from torch._inductor.compile_fx import compile_fx

    patches = list_mode_options(mode) if mode else None
    return lambda gm, inputs: compile_fx(gm, inputs, config_patches=patches, decompositions=inductor_decompositions())


class CompiledPotential:
    """A ``torch.compile``'d energy + forces (+ stress) evaluator of one model.

    Args:
        model: the model (``forward(batch, compute_forces, compute_stress, training)`` contract).
            It is used as is (not copied); put it in ``eval()`` mode on the wanted device/dtype first.
        mode: inductor mode (``None`` = default, ``"max-autotune-no-cudagraphs"``, ...). Avoid the
            CUDA-graph modes (``"reduce-overhead"``) with changing sizes.
        fullgraph: passed to ``torch.compile``; True makes a graph break an error.
        backend: ``"inductor"`` (default; C++/OpenMP on CPU, Triton on CUDA) or any dynamo backend
            name, e.g. ``"aot_eager"`` (traces and runs AOTAutograd without code generation).

    Call it like :func:`evaluate`: ``potential(batch, compute_stress=False) -> dict``.
    """

    def __init__(
        self, model: torch.nn.Module, mode: str | None = None, fullgraph: bool = False, backend: str = "inductor"
    ) -> None:
        self.model = model
        self.num_compiles = 0
        """Graphs compiled so far for this potential (counted by the wrapping backend)."""
        if model_device(model).type == "cpu":  # inductor's buffers: from the heap, not a fresh mmap per call
            keep_large_blocks()
        self._slots = uses_neighbour_slots(model)
        self._species = uses_species(model)
        self._inner_backend = compiler_backend(backend, mode)
        self._energy = torch.compile(_energy_function(model), backend=self._backend, fullgraph=fullgraph, dynamic=None)

    def _backend(self, graph_module: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
        """The chosen backend, counting every graph it is asked to compile."""
        self.num_compiles += 1
        return self._inner_backend(graph_module, example_inputs)

    def __call__(self, batch: dict[str, torch.Tensor], compute_stress: bool = False) -> dict[str, torch.Tensor]:
        if self._slots and keys.NEIGHBOUR_SLOTS not in batch:
            # the convolution's neighbour slots (their width is data, so the graph cannot make them)
            slots = neighbour_slots(batch[keys.EDGE_INDEX], batch[keys.POSITIONS].shape[0])
            batch = batch if slots is None else {**batch, **slots}
        if self._species:  # the elements present (their number is data, so the graph cannot find them)
            batch = with_species(batch)
        return energy_forces_stress(self._energy, batch, compute_stress=compute_stress)


def compile_model(
    model: torch.nn.Module, mode: str | None = None, fullgraph: bool = False, backend: str = "inductor"
) -> CompiledPotential:
    """Compile ``model`` for inference: returns a :class:`CompiledPotential` (a callable).

    Example::

        potential = compile_model(model.eval())
        out = potential(batch, compute_stress=True)   # energy, node_energy, forces, stress, virials
    """
    return CompiledPotential(model, mode=mode, fullgraph=fullgraph, backend=backend)
