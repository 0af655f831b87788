"""``train.compile: true`` with the real inductor backend, in the default suite: one tiny model, two steps.

tests/train/test_compiled_step.py checks the compiled training step with ``aot_eager`` (dynamo and
AOTAutograd, no code generation) by default and with inductor only under ``MLIP_SLOW_TESTS=1``. This
file is the one default-suite test that lets inductor generate (C++) code for a training step, so that
``make test`` catches a step that no longer compiles or computes other numbers once compiled. It costs
one inductor compilation of a small forward + backward graph (tens of seconds on 2 loaded CPU cores; less
when inductor's on-disk FX graph cache already holds it).
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
import torch._inductor.compile_fx as inductor_compile_fx
from train_support import ACAC

from mlip.data.batch import collate
from mlip.data.graph import configuration_to_graph
from mlip.data.io import read_configurations
from mlip.nn.hparams import ModelHyperparameters
from mlip.nn.model import build_model
from mlip.train.compiled_step import CompiledStep
from mlip.train.loss import LossWeights, WeightedLoss

# the smallest model that still goes through every block of the step: embedding, radial MLP, one
# interaction, symmetric contraction, MLP readout, scale/shift, E0s
TINY = dict(hidden_irreps="2x0e + 2x1o", max_ell=1, correlation=2, num_interactions=1, r_max=4.0, num_bessel=4,
            radial_mlp=[8], mlp_irreps="4x0e")


def _model() -> torch.nn.Module:
    """The tiny float64 acac (H, C, O) model, seeded."""
    torch.manual_seed(0)
    hp = ModelHyperparameters(heads=["Default"], avg_num_neighbors=8.0, atomic_numbers=[1, 6, 8],
                              atomic_energies=[[-13.6, -1026.9, -2037.8]], scale=[0.8], shift=[-4.9], **TINY)
    return build_model(hp, dtype=torch.float64)


def _batches() -> list[dict[str, torch.Tensor]]:
    """Two float64 batches of different sizes (2 and 3 structures) from the bundled acac training frames."""
    path = ACAC / "train.xyz"
    if not path.is_file():
        pytest.skip(f"bundled {path.parent} missing")
    configs = read_configurations(path, index=":5")
    graphs = [configuration_to_graph(c, TINY["r_max"], ["Default"]) for c in configs]
    return [collate(graphs[:2], dtype=torch.float64), collate(graphs[2:], dtype=torch.float64)]


def _loss_and_grads(
    model: torch.nn.Module, loss_fn: WeightedLoss, batch: dict[str, torch.Tensor], compiled: CompiledStep | None
) -> tuple[float, dict[str, torch.Tensor]]:
    """One training step's loss and parameter gradients, through ``compiled`` or eagerly (``None``)."""
    model.zero_grad(set_to_none=True)
    if compiled is None:
        loss, _ = loss_fn(batch, model(batch, compute_forces=True, training=True))
    else:
        loss, _ = compiled(batch)
    loss.backward()
    if compiled is not None:
        compiled.first_step_done()
    return float(loss.detach()), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.slow
def test_inductor_training_step_matches_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two compiled steps (batches of 2 and 3 structures): the loss and every parameter gradient equal the
    eager step's to float64 round-off, inductor's ``compile_fx`` compiled exactly one graph (dynamic sizes:
    the second batch reuses it) and the step's own counter agrees."""
    calls: list[int] = []
    real_compile_fx: Callable[..., Any] = inductor_compile_fx.compile_fx

    def counting_compile_fx(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real_compile_fx(*args, **kwargs)

    # mlip.inference.compiler_backend imports compile_fx from this module when it builds the backend
    monkeypatch.setattr(inductor_compile_fx, "compile_fx", counting_compile_fx)
    model = _model()
    loss_fn = WeightedLoss("mse", LossWeights(energy=1.0, forces=100.0))
    logged: list[str] = []
    compiled = CompiledStep(model, loss_fn, log=logged.append)  # the trainer's call: default backend, inductor
    names = [n for n, _ in model.named_parameters()]
    assert len(names) >= 10
    for batch in _batches():
        loss_c, grads_c = _loss_and_grads(model, loss_fn, batch, compiled)
        loss_e, grads_e = _loss_and_grads(model, loss_fn, batch, None)
        assert loss_e > 0
        assert abs(loss_c - loss_e) <= 1e-10 * loss_e, (loss_c, loss_e)
        assert sorted(grads_c) == sorted(grads_e) == sorted(names)  # every parameter gets a gradient, both ways
        for name in names:
            g = grads_e[name]
            assert float(g.abs().max()) > 0, name
            assert float((grads_c[name] - g).abs().max()) <= 1e-8 * max(1.0, float(g.abs().max())), name
    assert len(calls) == 1  # inductor compiled the step (forward; AOTAutograd hands it the backward too)
    assert compiled.num_compiles == 1  # no graph break, no recompilation for the second batch size
    assert len(logged) == 1 and logged[0].startswith("train.compile:") and "1 graph(s)" in logged[0]
