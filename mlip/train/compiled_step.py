"""The training step's forward half under ``torch.compile`` (``train.compile: true``).

What is compiled: one function ``batch -> (loss, terms)`` that runs the model with
``compute_forces=True, training=True`` -- so forces (and stress) are taken *inside* it by
``torch.autograd.grad(..., create_graph=True)`` -- and the weighted loss. The caller then runs
``loss.backward()`` as usual. AOTAutograd traces the forward, including the force (double-)backward
written out as ordinary operations, into one joint graph and derives its backward ahead of time, so
the parameter gradients come from a compiled backward graph as well: one forward and one backward
graph per step, no graph break.

Why this formulation (torch 2.13):

* Compiling only the energy and letting autograd take forces outside the compiled region (what
  :class:`mlip.inference.CompiledPotential` does for inference) does not train: the compiled
  region's backward is not differentiable again, and training needs ``d(loss(forces))/d(params)``.
* ``torch.autograd.grad`` inside a compiled function graph-breaks unless
  ``torch._dynamo.config.trace_autograd_ops`` is on. The flag is switched on only around the
  compiled call with ``torch._dynamo.config.patch`` (a context manager that restores it), never
  globally, so eager code and other compiled functions of the process are unaffected.
* The positions are made to require grad *before* the call (the model's own
  ``requires_grad_`` on a fresh copy would be traced as a graph input mutation otherwise), and with
  stress the zero strain handle (``displacement``, a leaf requiring grad) is made outside and passed in
  the batch: creating it inside graph-breaks (3 graphs per step, found on periodic Si).

Dynamic shapes, not padding: the atom, edge and graph dimensions of every batch are marked with
``torch._dynamo.maybe_mark_dynamic`` (atoms/edges as in :mod:`mlip.inference`; graphs for the
per-structure entries), so batches of different sizes reuse one graph. Dynamo specialises sizes 0
and 1: a batch holding a single structure (e.g. the last, smaller batch of an epoch) compiles one
more graph, once. Changing what the loss looks at (stage two switches loss weights or turns stress on)
recompiles once too. Inductor gets :func:`mlip.inference.inductor_decompositions` (the ``aten.mm``
entry without the CPU size guard that would otherwise bound the atom count).
"""

from __future__ import annotations

import time
import types
from typing import Any, Callable

import torch

from mlip.data import keys
from mlip.inference import EDGE_DIMS, NODE_KEYS, compiler_backend, fresh_code
from mlip.nn.contraction import uses_species, with_species
from mlip.nn.grad_output import zero_displacement

GRAPH_DIM_KEYS: tuple[str, ...] = (
    "cell", "pbc", "head", "energy", "weight", "energy_weight", "forces_weight", "stress_weight",
    "virials_weight", "stress", "virials", "has_energy", "has_forces", "has_stress", "has_virials", "displacement",
)
"""Batch entries whose dimension 0 is the number of structures in the batch."""
ATOM_DIM_KEYS: tuple[str, ...] = (*NODE_KEYS, "forces")
"""Batch entries whose dimension 0 is the atom count (``ptr`` is ``[graphs + 1]``, marked too)."""


def mark_dynamic(batch: dict[str, torch.Tensor]) -> None:
    """Mark the atom, edge and graph dimensions of a training batch dynamic (no-op outside compile)."""
    for key in ATOM_DIM_KEYS + GRAPH_DIM_KEYS + ("ptr",):
        value = batch.get(key)
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            torch._dynamo.maybe_mark_dynamic(value, 0)
    for key, dim in EDGE_DIMS:
        if key in batch:
            torch._dynamo.maybe_mark_dynamic(batch[key], dim)


class CompiledStep:
    """``step(batch, compute_stress) -> (loss, terms)``, compiled; call ``loss.backward()`` after it.

    Args:
        module: the model (or its DDP wrapper) with the ``forward(batch, compute_forces,
            compute_stress, training)`` contract.
        loss_fn: ``loss_fn(batch, output) -> (loss, terms)`` (:class:`mlip.train.loss.WeightedLoss`).
        backend: ``"inductor"`` (default) or any dynamo backend name (``"aot_eager"``: no code generation).
        mode: inductor mode (``None`` = default).
        log: receives one line with the compilation time of the first step.

    :attr:`num_compiles` counts the graphs the backend was asked to compile (forward graphs; AOTAutograd
    compiles the matching backward with it). :attr:`compile_seconds` is the wall time of the first step (see :meth:`first_step_done`).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        loss_fn: Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]],
        backend: str = "inductor",
        mode: str | None = None,
        log: Callable[[str], None] | None = print,
    ) -> None:
        self.module = module
        self.loss_fn = loss_fn
        self.log = log
        self.num_compiles = 0
        self.compile_seconds: float | None = None
        self._t_first: float | None = None
        self._inner = compiler_backend(backend, mode)
        self._species = uses_species(module)
        self._compiled = torch.compile(self._own_code(), backend=self._backend, dynamic=None)

    def _own_code(self) -> Callable[..., Any]:
        """``self._forward_loss`` on a code object of its own. Dynamo keeps compiled graphs (and its
        recompilation limit, 8) per code object, so instances sharing the method's code would see each
        other's graphs and guards (another model's buffers): extra recompilations, and after 8 a silent
        fall-back to eager."""
        return types.MethodType(fresh_code(type(self)._forward_loss), self)

    def _backend(self, graph_module: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
        self.num_compiles += 1
        return self._inner(graph_module, example_inputs)

    def _forward_loss(
        self, batch: dict[str, torch.Tensor], compute_stress: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.module(batch, compute_forces=True, compute_stress=compute_stress, training=True)
        loss, terms = self.loss_fn(batch, out)
        return loss, {k: v.detach() for k, v in terms.items()}

    def __call__(
        self, batch: dict[str, torch.Tensor], compute_stress: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss (with its graph, for ``backward()``) and detached per-property terms of one batch."""
        inputs = dict(with_species(batch) if self._species else batch)  # the elements present (data-sized)
        inputs[keys.POSITIONS] = batch[keys.POSITIONS].detach().requires_grad_(True)
        if compute_stress:  # leaf tensors that require grad are made outside the graph (no graph break)
            num_graphs = batch[keys.PTR].shape[0] - 1
            inputs[keys.DISPLACEMENT] = zero_displacement(num_graphs, inputs[keys.POSITIONS])
        mark_dynamic(inputs)
        if self._t_first is None and self.compile_seconds is None:
            self._t_first = time.perf_counter()
        with torch._dynamo.config.patch(trace_autograd_ops=True):
            return self._compiled(inputs, compute_stress)

    def first_step_done(self) -> None:
        """Call after the first ``backward()`` (AOTAutograd compiles the backward graph lazily, there):
        records :attr:`compile_seconds` and logs it, once."""
        if self._t_first is None or self.compile_seconds is not None:
            return
        self.compile_seconds = time.perf_counter() - self._t_first
        if self.log is not None:
            self.log(
                f"train.compile: first training step (compilation of forward, forces by autograd, loss and "
                f"backward, and one step) took {self.compile_seconds:.1f} s; {self.num_compiles} graph(s)"
            )
