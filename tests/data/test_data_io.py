"""Reading labelled structures, and one test per bad-input case (message names file, frame and key)."""

from __future__ import annotations

import numpy as np
import pytest

from data_testlib import DATA
from mlip.data.configuration import Configuration
from mlip.data.io import read_configurations, write_configurations
from mlip.errors import DataError

GOOD = '''2
Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.5 config_type=md pbc="F F F"
O 0.0 0.0 0.0 0.1 0.2 0.3
H 0.96 0.0 0.0 -0.1 -0.2 -0.3
'''


def frame(body_header: str, atoms: str, n: int = 2) -> str:
    return f"{n}\n{body_header}\n{atoms}"


def write(tmp_path, text, name="data.xyz"):
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_names(err: pytest.ExceptionInfo, path, frame_index: int | None, key: str | None):
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    if frame_index is not None:
        assert f"frame {frame_index}" in message
    if key is not None:
        assert f"key '{key}'" in message


# ---- reading -------------------------------------------------------------------------------

def test_reads_bundled_acac_labels_from_calculator():
    configs = read_configurations(DATA / "acac" / "train.xyz", required=("energy", "forces"))
    assert len(configs) == 100
    c = configs[0]
    # Values copied by hand from the first frame of the file.
    assert c.energy == pytest.approx(-9391.45554428476)
    np.testing.assert_allclose(c.forces[0], [1.47339228, 1.13796366, 0.06391102])
    np.testing.assert_allclose(c.positions[0], [0.07874433, 1.40230941, 0.08237721])
    assert c.numbers.tolist()[:3] == [6, 6, 6] and c.n_atoms == 15
    assert not c.pbc.any() and c.stress is None and c.config_type == "300K_MD"
    assert c.source.endswith("train.xyz:0") and configs[7].source.endswith("train.xyz:7")


def test_reads_si_stress_3x3():
    configs = read_configurations(DATA / "si" / "train.xyz", required=("energy", "forces", "stress"))
    assert len(configs) == 12 and all(c.pbc.all() for c in configs)
    assert configs[0].stress.shape == (3, 3)
    np.testing.assert_allclose(configs[0].stress, configs[0].stress.T)


def test_custom_keys_in_info_and_arrays_voigt_and_weights(tmp_path):
    text = frame(
        'Lattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3:REF_forces:R:3 REF_energy=2.0 '
        'REF_stress="1 2 3 4 5 6" config_weight=0.5 config_forces_weight=3.0 head=dft pbc="T T T"',
        "Si 0 0 0 1 2 3\nSi 1.3 1.3 1.3 -1 -2 -3\n",
    )
    path = write(tmp_path, text)
    (c,) = read_configurations(path, energy_key="REF_energy", forces_key="REF_forces", stress_key="REF_stress")
    assert c.energy == 2.0 and c.head == "dft" and c.weight == 0.5
    assert c.property_weights == {"energy": 1.0, "forces": 3.0, "stress": 1.0, "virials": 1.0}
    np.testing.assert_allclose(c.forces, [[1, 2, 3], [-1, -2, -3]])
    # Voigt xx yy zz yz xz xy -> full matrix.
    np.testing.assert_allclose(c.stress, [[1, 6, 5], [6, 2, 4], [5, 4, 3]])
    # The default key finds nothing here: a missing label is None, not zero.
    (d,) = read_configurations(path)
    assert d.energy is None and d.forces is None and d.stress is None
    # An explicit head overrides the file's head key.
    (e,) = read_configurations(path, head="other")
    assert e.head == "other"


def test_missing_labels_are_none_and_isolated_atoms_need_only_energy():
    configs = read_configurations(DATA / "acac" / "isolated_atoms.xyz", required=("energy", "forces"))
    assert [c.numbers.tolist() for c in configs] == [[1], [6], [8]]
    assert all(c.forces is None for c in configs)
    assert configs[0].energy == pytest.approx(-13.568422178253735)


def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    config = Configuration(
        numbers=[14, 14], positions=[[0, 0, 0], [1.4, 1.3, 1.2]], cell=np.eye(3) * 5, pbc=[True] * 3,
        energy=-3.25, forces=rng.normal(size=(2, 3)), stress=np.diag([0.1, 0.2, 0.3]),
        virials=np.arange(9.0).reshape(3, 3),
        weight=2.0, property_weights={"stress": 0.5}, config_type="bulk", head="h",
    )
    path = tmp_path / "out.xyz"
    write_configurations(path, [config])
    (back,) = read_configurations(path)
    assert back.energy == config.energy and back.head == "h" and back.config_type == "bulk"
    np.testing.assert_allclose(back.forces, config.forces)
    np.testing.assert_allclose(back.stress, config.stress)
    np.testing.assert_allclose(back.virials, [[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    assert back.weight == 2.0 and back.property_weights["stress"] == 0.5


def test_index_selects_frames_and_numbers_them_in_the_file():
    configs = read_configurations(DATA / "acac" / "train.xyz", index="10:13")
    assert [c.source.rsplit(":", 1)[1] for c in configs] == ["10", "11", "12"]


def test_require_any(tmp_path):
    path = write(tmp_path, GOOD)
    with pytest.raises(DataError) as err:
        read_configurations(path, require_any=("stress",))
    assert_names(err, path, None, "stress")


# ---- bad input: one test per case --------------------------------------------------------------

def test_missing_energy_key(tmp_path):
    path = write(tmp_path, GOOD + GOOD.replace("energy=-1.5 ", ""))
    with pytest.raises(DataError) as err:
        read_configurations(path, required=("energy", "forces"))
    assert_names(err, path, 1, "energy")


def test_missing_forces_key(tmp_path):
    path = write(tmp_path, GOOD)
    with pytest.raises(DataError) as err:
        read_configurations(path, forces_key="REF_forces", required=("energy", "forces"))
    assert_names(err, path, 0, "REF_forces")
    assert "forces" in str(err.value)  # it also lists the keys the frame does carry


def test_nan_energy(tmp_path):
    path = write(tmp_path, GOOD + GOOD.replace("energy=-1.5", "energy=nan"))
    with pytest.raises(DataError) as err:
        read_configurations(path)
    assert_names(err, path, 1, "energy")
    assert "NaN" in str(err.value)


def test_inf_forces(tmp_path):
    path = write(tmp_path, GOOD.replace("0.1 0.2 0.3", "0.1 inf 0.3"))
    with pytest.raises(DataError) as err:
        read_configurations(path)
    assert_names(err, path, 0, "forces")


def test_forces_shape_mismatch(tmp_path):
    bad = frame('Properties=species:S:1:pos:R:3:forces:R:2 energy=1.0 pbc="F F F"', "O 0 0 0 1 2\nH 0.96 0 0 1 2\n")
    path = write(tmp_path, GOOD + GOOD + bad)
    with pytest.raises(DataError) as err:
        read_configurations(path)
    assert_names(err, path, 2, "forces")
    assert "shape" in str(err.value)


def test_empty_file(tmp_path):
    path = write(tmp_path, "")
    with pytest.raises(DataError) as err:
        read_configurations(path)
    assert_names(err, path, None, None)
    assert "empty" in str(err.value)


def test_not_a_structure_file(tmp_path):
    path = write(tmp_path, "this is not\na structure file\n")
    with pytest.raises(DataError) as err:
        read_configurations(path)
    assert_names(err, path, 0, None)
    assert "structure" in str(err.value)


def test_truncated_second_frame(tmp_path):
    path = write(tmp_path, GOOD + GOOD.replace("2\n", "3\n", 1))
    with pytest.raises(DataError) as err:
        read_configurations(path)
    assert_names(err, path, 1, None)


def test_missing_file(tmp_path):
    with pytest.raises(DataError) as err:
        read_configurations(tmp_path / "nope.xyz")
    assert "not found" in str(err.value)


def test_unknown_element_dummy_symbol(tmp_path):
    path = write(tmp_path, GOOD + GOOD.replace("\nH ", "\nX "))
    with pytest.raises(DataError) as err:
        read_configurations(path)
    assert_names(err, path, 1, "species")
    assert "unknown element" in str(err.value)


def test_unknown_element_not_in_allowed(tmp_path):
    path = write(tmp_path, GOOD + GOOD.replace("\nH ", "\nN "))
    with pytest.raises(DataError) as err:
        read_configurations(path, allowed_numbers=[1, 8])
    assert_names(err, path, 1, "species")
    assert "N (Z=7)" in str(err.value)
    assert "model's elements (H, O)" in str(err.value)  # symbols, not [1, 8]


def test_unknown_element_symbol(tmp_path):
    path = write(tmp_path, GOOD + GOOD.replace("\nH ", "\nQq "))
    with pytest.raises(DataError) as err:
        read_configurations(path)
    assert_names(err, path, 1, None)
    assert "Qq" in str(err.value)


def test_atoms_too_close(tmp_path):
    path = write(tmp_path, GOOD + GOOD.replace("H 0.96 0.0 0.0", "H 0.05 0.0 0.0"))
    with pytest.raises(DataError) as err:
        read_configurations(path)
    assert_names(err, path, 1, "positions")
    assert "0.0500 A" in str(err.value)


def test_atoms_too_close_through_periodic_image(tmp_path):
    # 0.02 and 4.95 in a 5 A box: 0.07 A apart through the boundary.
    text = frame('Lattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3 energy=1.0 pbc="T T T"',
                 "Si 0.02 1 1\nSi 4.95 1 1\n")
    path = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        read_configurations(path)
    assert_names(err, path, 0, "positions")
    assert "0.0700 A" in str(err.value)


def test_stress_on_non_periodic_frame(tmp_path):
    path = write(tmp_path, GOOD.replace("pbc=", 'stress="1 0 0 0 1 0 0 0 1" pbc='))
    with pytest.raises(DataError) as err:
        read_configurations(path)
    assert_names(err, path, 0, "stress")
    assert "non-periodic" in str(err.value)


def test_reads_labels_from_single_point_calculator_in_traj(tmp_path):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    atoms = Atoms("Si2", positions=[[0, 0, 0], [1.3, 1.3, 1.3]], cell=np.eye(3) * 5, pbc=True)
    forces = np.array([[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]])
    atoms.calc = SinglePointCalculator(atoms, energy=-7.5, forces=forces, stress=[1, 2, 3, 4, 5, 6])
    path = tmp_path / "frames.traj"
    write(path, [atoms, atoms])
    configs = read_configurations(path, required=("energy", "forces", "stress"))
    assert len(configs) == 2 and configs[1].energy == -7.5
    np.testing.assert_allclose(configs[0].forces, forces)
    np.testing.assert_allclose(configs[0].stress, [[1, 6, 5], [6, 2, 4], [5, 4, 3]])


def test_unknown_format_names_no_frame(tmp_path):
    path = write(tmp_path, "a,b\n1,2\n", name="table.csv")
    with pytest.raises(DataError) as err:
        read_configurations(path)
    assert str(path) in str(err.value) and "frame" not in str(err.value)
