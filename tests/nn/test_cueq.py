"""cuEquivariance backend (mlip.nn.backends): same numbers as the e3nn backend and as mace-torch.

CPU only here: the cueq modules run cuEquivariance-torch's "naive" method (linears, fully connected and
channel-wise products) and the dense evaluation of cuEquivariance's symmetric-contraction descriptor.
"""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
import torch
from graphs import FIXTURES, atoms_structures, make_batch

pytest.importorskip("cuequivariance_torch")

from mlip.errors import ConfigError, ModelFileError  # noqa: E402
from mlip.nn.backends.convert import convert_backend, verify_backends_agree  # noqa: E402
from mlip.nn.backends import cueq as cueq_module  # noqa: E402
from mlip.nn.backends import cueq_contraction  # noqa: E402

VARIANTS = ["off_residual", "mp_density_zbl_agnesi", "mh_nonlinear_two_heads"]
_CUEQ: dict = {}


@pytest.fixture(scope="module")
def cueq_of(converted):
    def get(variant: str):
        if variant not in _CUEQ:
            _CUEQ[variant] = convert_backend(converted(variant), "cueq")
        return _CUEQ[variant]

    return get


def _batch(variant, model, head=0, dtype=torch.float64):
    atoms = ase.io.read(FIXTURES / variant / "structures.xyz", ":")
    return make_batch(atoms_structures(atoms), model.r_max, heads=[head] * len(atoms), dtype=dtype)


def _outputs(model, batch):
    out = model(batch, compute_forces=True, compute_stress=True)
    return {k: out[k].detach() for k in ("energy", "forces", "stress", "node_energy")}


@pytest.mark.parametrize("variant", VARIANTS)
def test_cueq_matches_e3nn_and_mace(converted, cueq_of, variant):
    e3nn_model, cueq_model = converted(variant), cueq_of(variant)
    assert cueq_model.hparams.backend == "cueq" and e3nn_model.hparams.backend == "e3nn"
    ref = np.load(FIXTURES / variant / "outputs.npz")
    for h, head in enumerate(e3nn_model.heads):
        batch = _batch(variant, e3nn_model, h)
        a, b = _outputs(e3nn_model, batch), _outputs(cueq_model, batch)
        for key in ("energy", "forces", "stress", "node_energy"):
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-10)
        # and against the stored mace-torch numbers (independent of both backends)
        np.testing.assert_allclose(b["energy"].numpy(), ref[f"{head}/energy"], rtol=0, atol=1e-8)
        ptr = batch["ptr"].numpy()
        for i in range(len(ptr) - 1):
            f = b["forces"][ptr[i] : ptr[i + 1]].numpy()
            np.testing.assert_allclose(f, ref[f"{head}/forces/{i}"], rtol=0, atol=1e-8)


def test_cueq_modules_are_used(converted, cueq_of):
    """The swapped model holds only cuEquivariance modules for products/linears, and never calls e3nn's TP."""
    model = cueq_of("mh_nonlinear_two_heads")
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"CueqLinear", "CueqConvolution", "CueqSymmetricContraction"} <= kinds
    from e3nn import o3

    assert not any(type(m) is o3.Linear for m in model.modules())
    off = cueq_of("off_residual")
    assert any(isinstance(m, cueq_module.CueqFullyConnected) for m in off.modules())
    for m in off.modules():  # the e3nn product kept for state-dict keys must not be evaluated
        if isinstance(m, cueq_module.CueqConvolution):
            m.tp.register_forward_pre_hook(lambda *_: (_ for _ in ()).throw(AssertionError("e3nn TP called")))
    _outputs(off, _batch("off_residual", off))
    # every symmetric-contraction basis map was solved exactly
    for m in model.modules():
        if isinstance(m, cueq_module.CueqSymmetricContraction):
            assert m.basis_residual < 1e-12


def test_round_trip_is_lossless(converted, cueq_of):
    e3nn_model = converted("mp_density_zbl_agnesi")
    back = convert_backend(cueq_of("mp_density_zbl_agnesi"), "e3nn")
    assert back.hparams.backend == "e3nn"
    sa, sb = e3nn_model.state_dict(), back.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    batch = _batch("mp_density_zbl_agnesi", e3nn_model)
    a, b = _outputs(e3nn_model, batch), _outputs(back, batch)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_conversion_refuses_a_tampered_model(converted, cueq_of, monkeypatch):
    e3nn_model, cueq_model = converted("off_residual"), cueq_of("off_residual")
    verify_backends_agree(e3nn_model, cueq_model)  # untouched: passes
    bad = convert_backend(e3nn_model, "cueq", check=False)
    conv = bad.interactions[1].conv
    conv._const["scale"] = conv._const["scale"].clone()
    conv._const["scale"][-1] *= -1.0  # one path's sign flipped
    with pytest.raises(ModelFileError, match="disagree"):
        verify_backends_agree(e3nn_model, bad)

    # a wrong symmetric-contraction map is caught inside convert_backend itself
    real = cueq_contraction._sc_transform

    def skewed(*key):
        T, res = real(*key)
        return T + 1e-7 * torch.ones_like(T), res

    monkeypatch.setattr(cueq_contraction, "_sc_transform", skewed)
    with pytest.raises(ModelFileError, match="refusing"):
        convert_backend(e3nn_model, "cueq")


def test_cli_backend_conversion(tmp_path, converted, monkeypatch, capsys):
    from mlip.cli.convert import main
    from mlip.io.model_file import load_model, read_model_info, save_model

    src = tmp_path / "m.pt"
    save_model(converted("off_residual"), src)
    out = tmp_path / "m_cueq.pt"
    assert main(["backend", "--model", str(src), "--backend", "cueq", "-o", str(out)]) == 0
    info, _ = read_model_info(out)
    assert info["hparams"]["backend"] == "cueq"
    loaded = load_model(out)
    assert loaded.hparams.backend == "cueq"
    batch = _batch("off_residual", loaded)
    torch.testing.assert_close(_outputs(loaded, batch)["forces"], _outputs(converted("off_residual"), batch)["forces"],
                               rtol=0, atol=1e-10)

    real = cueq_contraction._sc_transform
    monkeypatch.setattr(cueq_contraction, "_sc_transform", lambda *k: (real(*k)[0] * 1.001, 0.0))
    bad_out = tmp_path / "bad.pt"
    assert main(["backend", "--model", str(src), "--backend", "cueq", "-o", str(bad_out)]) == 2
    assert not bad_out.exists()
    assert "disagree" in capsys.readouterr().err


def test_float32(converted, cueq_of):
    import copy

    e3nn64 = converted("mh_nonlinear_two_heads")
    e3nn32 = copy.deepcopy(e3nn64).to(torch.float32)
    cueq32 = convert_backend(e3nn32, "cueq")  # the self-check runs in float32
    assert cueq32.dtype == torch.float32 and cueq32.atomic_energies.dtype == torch.float64  # E0s stay exact
    batch = _batch("mh_nonlinear_two_heads", e3nn64, dtype=torch.float32)
    a32, c32 = _outputs(e3nn32, batch), _outputs(cueq32, batch)
    a64 = _outputs(e3nn64, _batch("mh_nonlinear_two_heads", e3nn64))
    assert c32["forces"].dtype == torch.float32
    for key in ("energy", "forces", "stress"):
        scale = float(a64[key].abs().max())
        assert float((c32[key].double() - a64[key]).abs().max()) < 1e-5 * max(scale, 1.0)
        assert float((c32[key] - a32[key]).abs().max()) < 1e-5 * max(scale, 1.0)
    # back to float64: mapping constants are restored exactly (not float32-rounded)
    c64 = copy.deepcopy(cueq32).to(torch.float64)
    c64.load_state_dict(e3nn64.state_dict())
    b = _batch("mh_nonlinear_two_heads", e3nn64)
    torch.testing.assert_close(_outputs(c64, b)["energy"], a64["energy"], rtol=0, atol=1e-10)


def test_unknown_backend_is_a_config_error(converted):
    with pytest.raises(ConfigError, match="backend"):
        convert_backend(converted("off_residual"), "tpu")
    from mlip.nn.hparams import ModelHyperparameters
    from mlip.nn.model import build_model

    with pytest.raises(ConfigError, match="backend"):
        build_model(ModelHyperparameters(atomic_numbers=[1, 8], backend="jax"))


def test_calculator_backend(converted):
    """MLIPCalculator(backend="cueq") converts on load (deep copy of the e3nn model) and gives the same results."""
    from mlip.calculator import MLIPCalculator

    model = converted("off_residual")
    atoms = ase.io.read(FIXTURES / "off_residual" / "structures.xyz", "0")
    results = []
    for backend in ("e3nn", "cueq"):
        atoms.calc = MLIPCalculator(model, dtype="float64", backend=backend)
        results.append((atoms.get_potential_energy(), atoms.get_forces()))
        assert atoms.calc.model.hparams.backend == backend
    assert abs(results[0][0] - results[1][0]) < 1e-10
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=0, atol=1e-10)
