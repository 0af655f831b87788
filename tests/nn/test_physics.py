"""Forces/stress vs finite differences, smooth cutoff, locality, ZBL at short range, dtype, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from graphs import make_batch
from small_models import VARIANTS, small_model

from mlip.errors import DataError


def _energy(model, structure, head=0):
    return _energies(model, [structure], head)[0]


def _energies(model, structures, head=0):
    """Energies of many structures in one batch (eV)."""
    b = make_batch(structures, model.r_max, heads=[head] * len(structures))
    return model(b, compute_forces=False)["energy"].detach().numpy()


def _periodic_structure(name):
    rng = np.random.default_rng(3)
    numbers = np.array([14, 42, 14, 42]) if name == "density_zbl_agnesi" else np.array([6, 1, 8, 1])
    cell = np.array([[3.9, 0.2, 0.1], [0.3, 4.1, 0.2], [0.0, 0.4, 3.8]])
    pos = rng.uniform(size=(4, 3)) @ cell
    return numbers, pos, cell, np.array([True, True, True])


@pytest.mark.parametrize("name", list(VARIANTS))
def test_forces_and_stress_match_central_differences(name):
    model = small_model(name)
    numbers, pos, cell, pbc = _periodic_structure(name)
    b = make_batch([(numbers, pos, cell, pbc)], model.r_max)
    out = model(b, compute_forces=True, compute_stress=True)
    h = 1e-5
    structures = []
    for i in range(len(pos)):
        for k in range(3):
            for sign in (1, -1):
                p = pos.copy()
                p[i, k] += sign * h
                structures.append((numbers, p, cell, pbc))
    for i in range(3):
        for j in range(3):
            for sign in (1, -1):
                F = np.eye(3)
                F[i, j] += sign * h
                structures.append((numbers, pos @ F, cell @ F, pbc))
    e = _energies(model, structures)
    n = 6 * len(pos)
    fd_forces = -(e[0:n:2] - e[1:n:2]).reshape(len(pos), 3) / (2 * h)
    np.testing.assert_allclose(out["forces"].detach().numpy(), fd_forces, atol=1e-7, rtol=0)
    assert np.abs(fd_forces).max() > 1e-3
    volume = abs(np.linalg.det(cell))
    fd_stress = (e[n::2] - e[n + 1 :: 2]).reshape(3, 3) / (2 * h) / volume
    np.testing.assert_allclose(out["stress"][0].detach().numpy(), fd_stress, atol=1e-8, rtol=0)
    np.testing.assert_allclose(out["virials"][0].detach().numpy(), -fd_stress * volume, atol=1e-7, rtol=0)


def _dimers(model, z1, z2, rs, head=0):
    """Energies and the x-force on the second atom of dimers at distances ``rs`` (one batch)."""
    none = (np.zeros((3, 3)), np.array([False] * 3))
    structures = [(np.array([z1, z2]), np.array([[0.0, 0.0, 0.0], [r, 0.0, 0.0]]), *none) for r in rs]
    b = make_batch(structures, model.r_max, heads=[head] * len(rs))
    out = model(b, compute_forces=True)
    return out["energy"].detach().numpy(), out["forces"][1::2, 0].detach().numpy()


def _dimer(model, z1, z2, r, head=0):
    e, f = _dimers(model, z1, z2, [r], head)
    return float(e[0]), float(f[0])


@pytest.mark.parametrize("name", list(VARIANTS))
def test_dimer_smooth_at_cutoff(name):
    model = small_model(name)
    z1, z2 = model.atomic_numbers[0], model.atomic_numbers[-1]
    rc = model.r_max
    deltas = [1e-1, 1e-2, 1e-3]
    fine = np.linspace(rc - 0.3, rc + 0.05, 71)
    rs = [rc + 0.5, rc + 1e-6, rc + 0.1, 2 * rc, rc - 0.6] + [rc - d for d in deltas] + list(fine)
    es, fs = _dimers(model, z1, z2, rs)
    e_far = es[0]
    assert np.all(fs[:4] == 0.0) and np.all(es[:4] == e_far)  # exactly zero interaction beyond r_max
    assert abs(es[4] - e_far) > 1e-6 and abs(fs[4]) > 1e-6  # inside: non-trivial
    # envelope of order p=5: value ~ delta^3, derivative ~ delta^2 (at least) approaching r_max
    de = np.abs(es[5:8] - e_far)
    df = np.abs(fs[5:8])
    assert np.all(de[1:] < de[:-1] * 1e-2 + 1e-14) and np.all(df[1:] < df[:-1] * 2e-2 + 1e-14)
    assert de[-1] < 1e-8 and df[-1] < 1e-5
    # a fine scan is continuous: neighbouring values differ by at most |F| * step (plus curvature)
    es, fs = es[8:], fs[8:]
    step = fine[1] - fine[0]
    assert np.all(np.abs(np.diff(es)) <= (np.abs(fs[1:]) + np.abs(fs[:-1])) * step + 1e-6 * step)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_locality_two_molecules(name):
    model = small_model(name)
    rng = np.random.default_rng(5)
    zs = model.atomic_numbers
    m1 = (np.array([zs[0], zs[-1], zs[0]]), rng.normal(scale=0.8, size=(3, 3)))
    m2 = (np.array([zs[-1], zs[0], zs[-1], zs[0]]), rng.normal(scale=0.8, size=(4, 3)))
    off = np.array([3 * model.r_max + 2.0, 0.0, 0.0])
    none = (np.zeros((3, 3)), np.array([False] * 3))
    both = (np.concatenate([m1[0], m2[0]]), np.concatenate([m1[1], m2[1] + off]), *none)
    b = make_batch([both], model.r_max)
    out = model(b)
    e1 = _energy(model, (*m1, *none))
    e2 = _energy(model, (*m2, *none))
    assert abs(float(out["energy"][0].detach()) - (e1 + e2)) < 1e-10 * max(1.0, abs(e1 + e2))
    f2 = model(make_batch([(*m2, *none)], model.r_max))["forces"]
    torch.testing.assert_close(out["forces"][3:], f2, rtol=0, atol=1e-12)


def test_zbl_dominates_at_short_range(converted):
    """mp_density_zbl_agnesi fixture (Si, Mo): every pair is strongly repulsive at 0.3 A."""
    model = converted("mp_density_zbl_agnesi")
    zs = model.atomic_numbers
    e0 = {z: float(model.atomic_energies[0, i]) for i, z in enumerate(zs)}
    for a in zs:
        for c in zs:
            (e03, e04), (f03, _) = _dimers(model, a, c, [0.3, 0.4])
            assert e03 - e0[a] - e0[c] > 100.0  # eV
            assert e03 > e04 and f03 > 10.0  # pushes the atoms apart


def test_zbl_module_against_hand_formula():
    from mlip.nn.pair import ZBL
    from ase.data import covalent_radii

    zbl = ZBL(p=5).double()
    for z1, z2, r in [(1, 1, 0.3), (1, 8, 0.5), (6, 8, 0.3), (14, 42, 0.3), (8, 8, 1.0)]:
        a = 0.4543 * 0.529 / (z1**0.3 + z2**0.3)
        x = r / a
        phi = 0.1818 * np.exp(-3.2 * x) + 0.5099 * np.exp(-0.9423 * x) + 0.2802 * np.exp(-0.4028 * x) + 0.02817 * np.exp(-0.2016 * x)
        rc = covalent_radii[z1] + covalent_radii[z2]
        u = r / rc
        env = (1 - 21 * u**5 + 35 * u**6 - 15 * u**7) if r < rc else 0.0
        expected = 0.5 * 14.3996 * z1 * z2 / r * phi * env
        got = zbl.edge_energy(torch.tensor([[r]], dtype=torch.float64), torch.tensor([z1]), torch.tensor([z2]))
        assert abs(float(got[0]) - expected) < 1e-12 * max(1.0, expected)
        if r < 0.6:
            assert 2 * expected > 1.0  # repulsive pair energy above 1 eV


def test_float32_matches_float64():
    model64 = small_model("nonlinear_two_heads")
    model32 = small_model("nonlinear_two_heads", dtype=torch.float32)
    rng = np.random.default_rng(0)
    s = (np.array([6, 1, 8, 1]), rng.normal(scale=0.9, size=(4, 3)), np.zeros((3, 3)), np.array([False] * 3))
    o64 = model64(make_batch([s], 3.0, dtype=torch.float64), compute_stress=False)
    o32 = model32(make_batch([s], 3.0, dtype=torch.float32), compute_stress=False)
    # energies are summed and returned in float64 whatever the model dtype (docs/model.md, "Precision")
    assert o32["energy"].dtype == torch.float64 and o32["forces"].dtype == torch.float32
    torch.testing.assert_close(o32["energy"].double(), o64["energy"], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(o32["forces"].double(), o64["forces"], rtol=1e-4, atol=1e-4)


def test_unknown_element_raises_data_error():
    model = small_model("residual")
    s = (np.array([6, 7]), np.array([[0.0, 0, 0], [1.2, 0, 0]]), np.zeros((3, 3)), np.array([False] * 3))
    with pytest.raises(DataError, match=r"\[7\]"):
        model(make_batch([s], model.r_max))


def test_edge_gate():
    model = small_model("density_zbl_agnesi")
    numbers, pos, cell, pbc = _periodic_structure("density_zbl_agnesi")
    b = make_batch([(numbers, pos, cell, pbc)], model.r_max)
    ref = model(b)["energy"]
    b["edge_gate"] = torch.ones(b["edge_index"].shape[1], dtype=torch.float64)
    torch.testing.assert_close(model(b)["energy"], ref, rtol=0, atol=1e-12)
    b["edge_gate"] = torch.zeros_like(b["edge_gate"])
    gated = model(b)["energy"]
    isolated = sum(
        _energy(model, (numbers[i : i + 1], np.zeros((1, 3)), np.zeros((3, 3)), np.array([False] * 3)))
        for i in range(len(numbers))
    )
    assert abs(float(gated[0].detach()) - isolated) < 1e-10


def test_outputs_and_shapes():
    model = small_model("nonlinear_two_heads")
    rng = np.random.default_rng(2)
    s1 = (np.array([6, 1, 8]), rng.normal(size=(3, 3)), np.zeros((3, 3)), np.array([False] * 3))
    s2 = (np.array([1, 1]), rng.normal(size=(2, 3)), np.zeros((3, 3)), np.array([False] * 3))
    b = make_batch([s1, s2], model.r_max, heads=[1, 0])
    out = model(b, compute_forces=True, compute_stress=True, training=True)
    assert out["energy"].shape == (2,) and out["node_energy"].shape == (5,)
    assert out["forces"].shape == (5, 3) and out["stress"].shape == (2, 3, 3) and out["virials"].shape == (2, 3, 3)
    assert out["node_feats"].shape == (5, 4 + 4)
    assert torch.all(out["stress"] == 0)  # non-periodic
    assert out["forces"].requires_grad  # training keeps the graph for force losses
    grads = torch.autograd.grad(out["forces"].pow(2).sum(), [p for p in model.parameters()], allow_unused=True)
    assert all(g is not None for g in grads)


def test_invalid_hparams_raise_config_error():
    from mlip.errors import ConfigError
    from mlip.nn.hparams import ModelHyperparameters
    from mlip.nn.model import build_model

    for kw, key in [
        (dict(atomic_numbers=[6, 1]), "atomic_numbers"),
        (dict(atomic_numbers=[1], interaction="foo"), "interaction"),
        (dict(atomic_numbers=[1], distance_transform="soft"), "distance_transform"),
        (dict(atomic_numbers=[1], correlation=[3]), "correlation"),
        (dict(atomic_numbers=[1], heads=["a", "b"]), "scale"),
    ]:
        with pytest.raises(ConfigError, match=key):
            build_model(ModelHyperparameters(**kw))


def test_dtype_cast_keeps_exact_coupling_constants():
    from e3nn import o3

    from mlip.nn.hparams import ModelHyperparameters
    from mlip.nn.model import build_model

    model = build_model(ModelHyperparameters(atomic_numbers=[1], hidden_irreps="2x0e + 2x1o", radial_mlp=[4]), dtype=torch.float32)
    model = model.double()
    found = 0
    for name, buf in model.named_buffers():
        if "_w3j_" in name:
            l1, l2, l3 = (int(x) for x in name.rsplit("_w3j_", 1)[1].split("_"))
            assert torch.equal(buf, o3.wigner_3j(l1, l2, l3, dtype=torch.float64))
            found += 1
    assert found > 0
