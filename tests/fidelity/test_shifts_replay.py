"""NEP89 per-element shifts, MH-1 E0 re-estimation and replay selection."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from fidelity_synth import make_frames

from mlip.errors import ConfigError, DataError
from mlip.fidelity.labels import element_counts, get_energy, get_forces
from mlip.fidelity.replay import element_filter, refit_e0s, replay_budget, select_replay
from mlip.fidelity.shifts import apply_element_shifts, fit_element_shifts, shift_structures, solve_counts

# H2O, CH4, CO2, H2 (elements H, C, O) -- full column rank
COUNTS = np.array([[2, 0, 1], [4, 1, 0], [0, 1, 2], [2, 0, 0], [2, 0, 1], [4, 1, 0]], dtype=float)


def test_shifts_recover_known_offsets():
    rng = np.random.default_rng(0)
    delta_true = np.array([0.3, -1.7, 2.5])
    pred = rng.normal(size=6) * 10
    # labels of the other data set sit below the model by N @ delta_true
    ref = pred - COUNTS @ delta_true
    delta = fit_element_shifts(ref, pred, COUNTS)
    np.testing.assert_allclose(delta, delta_true, atol=1e-10)
    np.testing.assert_allclose(apply_element_shifts(ref, COUNTS, delta), pred, atol=1e-10)


def test_shifts_hand_two_frames():
    # H2: pred - ref = 2; H2O: pred - ref = 5  ->  Delta_H = 1, Delta_O = 3
    delta = fit_element_shifts(np.array([0.0, 0.0]), np.array([2.0, 5.0]), np.array([[2.0, 0.0], [2.0, 1.0]]))
    np.testing.assert_allclose(delta, [1.0, 3.0], atol=1e-12)


def test_rank_deficient_keeps_per_frame_shift():
    counts = np.tile([[5.0, 8.0, 2.0]], (4, 1))  # one composition (acetylacetone)
    x, rank = solve_counts(counts, np.full(4, 7.5))
    assert rank == 1
    np.testing.assert_allclose(counts @ x, 7.5, atol=1e-10)


def test_refit_e0s_recovers_known_offsets():
    rng = np.random.default_rng(1)
    e0_old = np.array([-13.6, -1027.0, -2038.0])
    c_true = np.array([3.0, 980.0, 1935.0])  # the new level's E0s differ by hundreds of eV
    interaction = rng.normal(size=6)
    pred = COUNTS @ e0_old + interaction
    ref = COUNTS @ (e0_old + c_true) + interaction
    np.testing.assert_allclose(refit_e0s(ref, pred, COUNTS, e0_old), e0_old + c_true, atol=1e-8)


def test_refit_e0s_shape_error():
    with pytest.raises(DataError):
        refit_e0s(np.zeros(6), np.zeros(6), COUNTS, np.zeros(2))


def test_shift_structures_and_drop_energy():
    frames = make_frames()
    counts = element_counts(frames, [1, 6, 8])
    delta_true = np.array([0.25, -0.5, 1.0])
    pred = np.array([get_energy(a) for a in frames]) + counts @ delta_true
    out, record = shift_structures(frames, pred, drop_energy=True)
    assert record["shifts"] == pytest.approx({"H": 0.25, "C": -0.5, "O": 1.0}, abs=1e-9)
    assert record["rmse_after"] == pytest.approx(0.0, abs=1e-9)
    for a_in, a_out, p in zip(frames, out, pred):
        assert get_energy(a_out) == pytest.approx(p, abs=1e-9)
        np.testing.assert_array_equal(get_forces(a_out), a_in.get_forces())
        assert a_out.info["config_energy_weight"] == 0.0


def _mol(formula):
    return Atoms(formula, positions=np.arange(3 * len(Atoms(formula))).reshape(-1, 3) * 0.7)


def test_element_filter_shares_two_elements():
    cands = [_mol(f) for f in ("H2O", "CH4", "CO2", "NH3", "SiO2", "HCN", "O2")]
    # fine-tuning elements {C, H, O}
    keep = element_filter(cands, {1, 6, 8}, min_shared=2)
    assert keep.tolist() == [0, 1, 2, 5]
    # a one-element fine-tuning set keeps frames with that element
    assert element_filter(cands, {8}).tolist() == [0, 2, 4, 6]


def test_replay_budget_ratio_guard():
    assert replay_budget(n_new=50, n_available=500) == 50  # max_ratio 1
    assert replay_budget(n_new=50, n_available=500, n_requested=400) == 50  # capped by ratio
    assert replay_budget(n_new=50, n_available=500, n_requested=400, max_ratio=3) == 150
    assert replay_budget(n_new=4, n_available=500) == 16  # minimum
    assert replay_budget(n_new=4, n_available=10) == 10  # never more than available
    assert replay_budget(n_new=50, n_available=500, n_requested=20) == 20


def test_select_replay_random_respects_filter_and_seed():
    cands = [_mol(f) for f in ("H2O", "NH3", "CH4", "SiO2", "CO2", "N2", "HCN", "H2O2") * 5]
    new = [_mol("CH3OH")]
    sel = select_replay(cands, new, n_requested=100, max_ratio=100, minimum=0, seed=4)
    allowed = {k for k, a in enumerate(cands) if len(set(a.numbers) & {1, 6, 8}) >= 2}
    assert set(sel.indices.tolist()) == allowed  # budget larger than candidates: all of them
    sel2 = select_replay(cands, new, n_requested=5, max_ratio=100, minimum=0, seed=4)
    assert len(sel2.indices) == 5 and set(sel2.indices.tolist()) <= allowed
    assert len(set(sel2.indices.tolist())) == 5
    assert sel2.indices.tolist() == select_replay(cands, new, 5, max_ratio=100, minimum=0, seed=4).indices.tolist()


def test_select_replay_fps_uses_descriptors():
    cands = [_mol("H2O") for _ in range(6)] + [_mol("N2")]
    desc = np.array([[0.0], [0.1], [5.0], [0.2], [-4.0], [0.05], [100.0]])
    sel = select_replay(cands, [_mol("H2O")], n_requested=2, method="fps", descriptors=desc, minimum=0, max_ratio=10)
    # N2 (index 6) is filtered out; among the rest the extremes 5.0 and -4.0 come first
    assert sorted(sel.indices.tolist()) == [2, 4]


def test_select_replay_errors():
    with pytest.raises(DataError, match="shares"):
        select_replay([_mol("N2")], [_mol("H2O")])
    with pytest.raises(ConfigError):
        select_replay([_mol("H2O")], [_mol("H2O")], method="fps")
    with pytest.raises(ConfigError):
        select_replay([_mol("H2O")], [_mol("H2O")], method="bogus")
