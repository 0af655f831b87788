"""The one element -> energy parser (mlip.data.elements) and the E0 forms built on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlip.data.configuration import Configuration
from mlip.data.elements import element_number, load_element_energies, parse_element_energies, symbols
from mlip.errors import ConfigError, DataError
from mlip.train.statistics import atomic_energies

ISO = Path(__file__).resolve().parents[2] / "data" / "acac" / "isolated_atoms.xyz"


def _frame(numbers, energy, source="train.xyz:0"):
    n = len(numbers)
    return Configuration(numbers=numbers, positions=np.arange(3 * n, dtype=float).reshape(n, 3) * 1.5,
                         energy=energy, source=source)


def test_element_number_and_symbols():
    assert [element_number(k) for k in ("Si", 14, "14", " O ", "Xx", 0, True)] == [14, 14, 14, 8, None, None, None]
    assert symbols([1, 6, 14]) == "H, C, Si"


def test_all_forms_give_the_same_mapping(tmp_path):
    want = {1: -13.5, 8: -2040.0}
    (tmp_path / "e.json").write_text(json.dumps({"H": -13.5, "8": -2040.0}))
    (tmp_path / "e.yaml").write_text("H: -13.5\nO: -2040.0\n")
    assert load_element_energies({"H": -13.5, 8: -2040}, "data.e0s") == want
    assert load_element_energies("H=-13.5,O=-2040", "tea") == want
    assert load_element_energies(str(tmp_path / "e.json"), "data.e0s") == want
    assert load_element_energies(str(tmp_path / "e.yaml"), "data.e0s") == want
    # structure file of isolated atoms: the acac values written in data/acac/isolated_atoms.xyz
    iso = load_element_energies(str(ISO), "data.e0s")
    assert iso == {1: pytest.approx(-13.568422178253735), 6: pytest.approx(-1026.8538996116154),
                   8: pytest.approx(-2037.796869412825)}


def test_bad_keys_name_the_key_and_origin(tmp_path):
    with pytest.raises(ConfigError, match=r"^config key 'data.e0s.Xx': not an element symbol"):
        parse_element_energies({"Xx": 1.0}, "data.e0s")
    bad = tmp_path / "bad.yaml"
    bad.write_text("H: abc\n")
    with pytest.raises(DataError, match=rf"^{bad}: key 'H': expected a number"):
        load_element_energies(str(bad), "data.e0s")
    bad.write_text("[1, 2]\n")
    with pytest.raises(DataError, match=rf"^{bad}: expected a mapping element -> energy"):
        load_element_energies(str(bad), "data.e0s")


def test_missing_element_names_data_and_isolated_files(tmp_path):
    iso = [_frame([1], -13.6, source="iso.xyz:0"), _frame([8], -2040.0, source="iso.xyz:1")]
    train = [_frame([1, 8], -2060.0, "water.xyz:0"), _frame([6, 8], -3070.0, "co.xyz:0")]
    with pytest.raises(DataError) as err:
        atomic_energies("isolated", train, iso, [1, 6, 8])
    msg = str(err.value)
    assert "no energy for C" in msg and "co.xyz" in msg and "water.xyz" not in msg and "iso.xyz" in msg
    assert "\n" not in msg


def test_single_composition_fit_warns_through_the_log():
    # one stoichiometry (H2O): E0(H), E0(O) are not determined, only 2 E0(H) + E0(O) is
    train = [_frame([1, 1, 8], -14.0 - 0.01 * k) for k in range(4)]
    lines: list[str] = []
    e0 = atomic_energies("fit", train, [], [1, 8], log=lines.append)
    assert 2 * e0[1] + e0[8] == pytest.approx(np.mean([-14.0 - 0.01 * k for k in range(4)]))
    assert len(lines) == 1 and lines[0].startswith("warning: data.e0s: 'fit' on head 'Default'")
    assert "determine only 1 of 2 E0s" in lines[0] and "isolated_atoms" in lines[0]
    lines.clear()
    assert atomic_energies("average", train, [], [1, 8], log=lines.append) == e0
    assert "'average'" in lines[0]


def test_average_is_the_least_squares_fit():
    # three compositions determine both E0s exactly: 2a + b = -10, a + b = -7, 2b = -8 -> a = -3, b = -4
    train = [_frame([1, 1, 8], -10.0), _frame([1, 8], -7.0), _frame([8, 8], -8.0)]
    lines: list[str] = []
    e0 = atomic_energies("average", train, [], [1, 8], log=lines.append)
    assert e0[1] == pytest.approx(-3.0) and e0[8] == pytest.approx(-4.0) and lines == []
