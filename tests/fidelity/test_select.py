"""Farthest-point sampling, NEP89 d_min filter, PCA projection plot."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mlip.errors import ConfigError
from mlip.fidelity.select import dmin_filter, farthest_point_sampling, pca_2d, plot_selection


def test_fps_picks_extremes_first_1d():
    x = np.array([[0.0], [1.0], [2.0], [10.0], [-10.0], [3.0]])
    # mean 1: farthest is -10 (index 4); then 10 (index 3); then 0 (min distance 10 to both)
    assert farthest_point_sampling(x, 3).tolist() == [4, 3, 0]


def test_fps_square_corners_first():
    rng = np.random.default_rng(0)
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float) * 10
    inner = rng.uniform(3, 7, size=(30, 2))
    x = np.vstack([inner, corners])
    first4 = farthest_point_sampling(x, 4)
    assert sorted(first4.tolist()) == [30, 31, 32, 33]


def test_fps_seed_start_and_all():
    x = np.random.default_rng(1).normal(size=(10, 3))
    order = farthest_point_sampling(x, 50, seed=3)
    assert sorted(order.tolist()) == list(range(10))
    assert order[0] == np.random.default_rng(3).integers(10)
    with pytest.raises(ConfigError):
        farthest_point_sampling(x, 2, start=11)


def test_fps_initial_continues_from_given():
    x = np.array([[0.0], [1.0], [9.0], [4.0]])
    # 0 already chosen: next farthest is 9 (index 2), then 4 (distance 4 vs 1)
    assert farthest_point_sampling(x, 2, initial=[0]).tolist() == [2, 3]


def test_dmin_hand_example():
    x = np.array([[0.0], [0.5], [1.2], [1.4], [3.0]])
    assert dmin_filter(x, 1.0).tolist() == [0, 2, 4]


def test_dmin_pairwise_distances_and_maximality():
    x = np.random.default_rng(2).normal(size=(200, 4))
    d_min = 1.3
    kept = dmin_filter(x, d_min)
    for a, b in itertools.combinations(kept, 2):
        assert np.linalg.norm(x[a] - x[b]) > d_min
    rejected = sorted(set(range(len(x))) - set(kept.tolist()))
    for r in rejected:  # each rejected frame lies within d_min of a kept one
        assert np.min(np.linalg.norm(x[kept] - x[r], axis=1)) <= d_min
    assert 1 < len(kept) < len(x)


def test_pca_line_has_one_component():
    t = np.linspace(-1, 1, 20)[:, None]
    x = t * np.array([[1.0, 2.0, -2.0]]) + 5.0
    coords, frac = pca_2d(x)
    assert frac[0] == pytest.approx(1.0)
    np.testing.assert_allclose(np.abs(coords[:, 0]), np.abs(t[:, 0]) * 3.0, atol=1e-10)
    np.testing.assert_allclose(coords[:, 1], 0.0, atol=1e-10)


def test_plot_writes_png(tmp_path):
    x = np.random.default_rng(0).normal(size=(30, 5))
    path = tmp_path / "proj.png"
    plot_selection(x, [0, 3, 7], path, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
