"""Statistics that become hyper-parameters: E0 specs (mapping / file / isolated / fit), scale and shift."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlip.data.configuration import Configuration
from mlip.errors import ConfigError, DataError
from mlip.train.statistics import atomic_energies, scale_shift


def _frame(numbers, energy, forces=None, config_type="Default"):
    n = len(numbers)
    return Configuration(numbers=numbers, positions=np.arange(3 * n, dtype=float).reshape(n, 3) * 1.5,
                         energy=energy, forces=forces, config_type=config_type)


def test_e0s_from_mapping_file_isolated_and_fit(tmp_path):
    train = [_frame([1, 1, 8], -10.0), _frame([1, 8], -7.0), _frame([8, 8], -8.0)]
    # mapping with symbols and atomic numbers
    assert atomic_energies({"H": -3.0, 8: -4.0}, train, [], [1, 8]) == {1: -3.0, 8: -4.0}
    path = tmp_path / "e0.json"
    path.write_text(json.dumps({"H": -1.5, "O": -2.5}))
    assert atomic_energies(str(path), train, [], [1, 8]) == {1: -1.5, 8: -2.5}
    iso = [_frame([1], -0.5, config_type="IsolatedAtom"), _frame([8], -2.0, config_type="IsolatedAtom")]
    assert atomic_energies("isolated", train, iso, [1, 8]) == {1: -0.5, 8: -2.0}
    # least squares by hand: 2a + b = -10, a + b = -7, 2b = -8 is solved exactly by a = -3, b = -4
    fit = atomic_energies("fit", train, [], [1, 8])
    assert fit[1] == pytest.approx(-3.0) and fit[8] == pytest.approx(-4.0)


def test_e0s_errors_name_the_key():
    train = [_frame([1, 8], -7.0)]
    with pytest.raises(ConfigError, match=r"'data.e0s.Xx': not an element symbol"):
        atomic_energies({"Xx": 1.0}, train, [], [1, 8])
    with pytest.raises(ConfigError, match=r"'data.e0s.H': expected a number"):
        atomic_energies({"H": "a", "O": 1.0}, train, [], [1, 8])
    with pytest.raises(DataError, match="O"):
        atomic_energies({"H": 1.0}, train, [], [1, 8])


def test_scale_and_shift_by_hand():
    e0 = {1: -1.0, 8: -2.0}
    f1 = np.array([[1.0, 0, 0], [0, 2.0, 0]])
    f2 = np.array([[0, 0, 3.0], [1.0, 1.0, 1.0], [0, 0, 0]])
    train = [_frame([1, 8], -5.0, f1), _frame([1, 1, 8], -7.0, f2)]
    # interaction energy per atom: (-5 + 3) / 2 = -1 and (-7 + 4) / 3 = -1 -> shift -1
    scale, shift = scale_shift(train, e0, "rms_forces")
    assert shift == pytest.approx(-1.0)
    # RMS over 15 components: (1 + 4 + 9 + 3) / 15
    assert scale == pytest.approx(np.sqrt(17 / 15))
    assert scale_shift(train, e0, "none") == (1.0, pytest.approx(-1.0))
