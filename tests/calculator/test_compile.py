"""torch.compile path: agreement with eager, no recompilation when atom/edge counts change.

Inductor compiles C++ on CPU, which takes a while on a small machine, so these tests use the
smallest model with every block of the default architecture: 2x0e+2x1o, max_ell 1, two
interactions (the first with a linear readout, the last with the MLP readout), correlation 2.
The sizes cover both sides of the bounds inductor's CPU ``mm`` decomposition used to put on the atom
count (``N <= 10`` from the contraction's one-path order, ``N + 4 <= 32`` from the readout's
backward; see docs/inference.md): a 2-atom periodic cell first, then 9 to 32 atoms.
The default suite compiles once (float64); the float32 comparison compiles a second graph and
only runs with ``MLIP_SLOW_TESTS=1``.

The tests run with the process's thread count (``make test`` uses OMP_NUM_THREADS=2): inductor's
multi-threaded C++ differs from its single-threaded C++ (atomic scatter stores)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from calc_support import si_cell
from mlip.calculator import MLIPCalculator
from mlip.nn.contraction import uses_species

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    from mlip.nn.hparams import ModelHyperparameters
    from mlip.nn.model import build_model

    hparams = ModelHyperparameters(
        atomic_numbers=[1, 6, 8, 14], atomic_energies=[[-1.0, -2.0, -3.0, -4.0]], avg_num_neighbors=8.0,
        r_max=4.0, num_bessel=4, max_ell=1, hidden_irreps="2x0e + 2x1o", num_interactions=2,
        correlation=2, radial_mlp=[8], mlp_irreps="4x0e",
    )
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():  # build_model draws its initial weights from the global generator
        torch.manual_seed(0)
        model = build_model(hparams, dtype=torch.float64)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return model


def _compare(compiled: MLIPCalculator, eager: MLIPCalculator, atoms, rtol: float, force_atol: float = 0.0) -> None:
    e_c, e_e = compiled.get_potential_energy(atoms), eager.get_potential_energy(atoms)
    assert e_c == pytest.approx(e_e, rel=rtol, abs=0)
    f_c, f_e = compiled.get_forces(atoms), eager.get_forces(atoms)
    scale = np.abs(f_e).max()
    assert scale > 1e-3
    np.testing.assert_allclose(f_c, f_e, rtol=0, atol=max(rtol * scale, force_atol))
    np.testing.assert_allclose(
        compiled.get_potential_energies(atoms), eager.get_potential_energies(atoms), rtol=0, atol=rtol * abs(e_e)
    )
    if atoms.pbc.all():
        s_c, s_e = compiled.get_stress(atoms), eager.get_stress(atoms)
        np.testing.assert_allclose(s_c, s_e, rtol=0, atol=rtol * np.abs(s_e).max())


def test_compiled_matches_eager_float64_without_recompiling(tiny_model):
    compiled = MLIPCalculator(tiny_model, dtype="float64", compile=True)
    eager = MLIPCalculator(tiny_model, dtype="float64")
    si2 = bulk("Si", "diamond", a=5.43)  # 2-atom primitive periodic cell, compiled first
    si2.rattle(0.05, seed=2)
    systems = [si2, molecule("CH3CH2OH"), molecule("C6H6"), si_cell(repeat=(1, 1, 1)), si_cell(repeat=(2, 2, 1))]
    sizes = set()
    for atoms in systems:
        _compare(compiled, eager, atoms, rtol=1e-10)
        batch = compiled.make_batch(atoms)
        sizes.add((batch["positions"].shape[0], batch["edge_index"].shape[1]))
    assert len(sizes) == len(systems)  # atom and edge counts really changed
    # dynamic shapes: one graph for all of them (this model's contractions never take the ``mixed`` scheme
    # in a compiled graph, so no ``species`` key is made: test_mixed_contraction_compiled covers that)
    assert not uses_species(tiny_model)
    assert compiled.potential.num_compiles == 1


@pytest.mark.skipif(os.environ.get("MLIP_SLOW_TESTS") != "1", reason="second compilation; set MLIP_SLOW_TESTS=1")
def test_compiled_matches_eager_float32(tiny_model):
    # A molecule with forces of order 0.1 eV/A. Float32 rounding alone (eager float32 against eager
    # float64) is already ~1e-6 of the largest force, so inductor's reordering of the sums may move
    # a force component by a few times that: the compiled forces must be as accurate as eager
    # float32 (within 4x its own rounding error), energies and per-atom energies within 1e-6.
    atoms = molecule("CH3CH2OH")
    compiled = MLIPCalculator(tiny_model, dtype="float32", compile=True)
    eager = MLIPCalculator(tiny_model, dtype="float32")
    rounding = np.abs(eager.get_forces(atoms) - MLIPCalculator(tiny_model, dtype="float64").get_forces(atoms)).max()
    _compare(compiled, eager, atoms, rtol=1e-6, force_atol=4 * rounding)
    assert compiled.potential.num_compiles == 1


def test_each_compiled_potential_compiles_its_own_graph(tiny_model):
    """Potentials of different models each compile their own graph and none falls back to eager.
    Dynamo keeps graphs and its recompilation limit (8 by default) per code object: with one shared
    ``def`` the second model would fail the first one's guards and, past the limit, run eagerly with no
    compilation. The limit is set to 1 here so that two models show it (instead of nine)."""
    import copy

    from mlip.data.structures import structure_batches
    from mlip.inference import CompiledPotential, evaluate

    atoms = molecule("CH3OH")
    potentials = []
    for i in range(2):
        model = copy.deepcopy(tiny_model)
        with torch.no_grad():
            next(model.parameters()).mul_(1.0 + 0.01 * i)
        potentials.append(CompiledPotential(model.eval(), backend="eager"))
    with torch._dynamo.config.patch(recompile_limit=1):
        for potential in potentials:
            _, _, batch = next(structure_batches([atoms], potential.model.r_max, potential.model.heads, 1))
            out = potential(batch)
            assert potential.num_compiles == 1
            ref = evaluate(potential.model, batch)
            np.testing.assert_allclose(out["forces"].numpy(), ref["forces"].numpy(), rtol=0, atol=1e-12)


def test_zbl_and_agnesi_constants_are_traced_once():
    """ZBL's and Agnesi's constants are ``[1]`` buffers. As 0-dim buffers, dynamo traced them as symbolic
    Python floats, then specialised them and traced the whole model a second time (a restart in
    ``_tensorify_python_scalars``, two graphs counted). ``aot_eager`` shows it without inductor's C++."""
    import copy
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nn"))
    from small_models import small_model

    from mlip.data.structures import structure_batches
    from mlip.inference import CompiledPotential, evaluate

    model = copy.deepcopy(small_model("density_zbl_agnesi")).eval()
    assert model.pair is not None and model.radial_embedding.transform is not None
    potential = CompiledPotential(model, backend="aot_eager")
    atoms = bulk("Si", "diamond", a=5.43) * (2, 1, 1)
    atoms.rattle(0.1, seed=3)
    _, _, batch = next(structure_batches([atoms], model.r_max, model.heads, 1))
    out = potential(batch)
    assert potential.num_compiles == 1
    ref = evaluate(model, batch)
    np.testing.assert_allclose(out["forces"].numpy(), ref["forces"].numpy(), rtol=0, atol=1e-12)


def test_mixed_contraction_compiled_with_species():
    """A model whose compiled contractions take ``mixed`` for up to 2 elements present: the batch's species go in
    as a dynamic input. One species (Si, twice, two sizes), two (benzene) and three (ethanol, past the limit: the
    static scheme) match eager to 1e-10; graphs: one per species count class (1, 2, 3), none for the new size."""
    from mlip.data.structures import structure_batches
    from mlip.inference import CompiledPotential, evaluate
    from mlip.nn.hparams import ModelHyperparameters
    from mlip.nn.model import build_model

    hparams = ModelHyperparameters(
        atomic_numbers=[1, 6, 8, 14], atomic_energies=[[-1.0, -2.0, -3.0, -4.0]], avg_num_neighbors=8.0,
        r_max=4.0, num_bessel=4, max_ell=3, hidden_irreps="2x0e + 2x1o", num_interactions=2,
        correlation=3, radial_mlp=[8], mlp_irreps="4x0e",
    )
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = build_model(hparams, dtype=torch.float64).eval()
    assert [p.contraction.mixed_limit["compiled"] for p in model.products] == [2, 2]
    potential = CompiledPotential(model, backend="aot_eager")
    si = bulk("Si", "diamond", a=5.43)
    systems = [si * (2, 1, 1), molecule("C6H6"), molecule("CH3CH2OH"), si * (2, 2, 1)]
    for atoms in systems:
        atoms.rattle(0.05, seed=4)
        _, _, batch = next(structure_batches([atoms], model.r_max, model.heads, 1))
        out, ref = potential(batch), evaluate(model, batch)
        np.testing.assert_allclose(out["energy"].numpy(), ref["energy"].numpy(), rtol=1e-10, atol=0)
        scale = np.abs(ref["forces"].numpy()).max()
        np.testing.assert_allclose(out["forces"].numpy(), ref["forces"].numpy(), rtol=0, atol=1e-10 * scale)
    assert potential.num_compiles == 3
