"""The one data path: per-head settings resolved once, isolated atoms split off at reading, one
statistics record for in-memory and .h5 data, one hyper-parameter builder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from train_support import TINY_MODEL

from mlip.config import config_from_dict, resolve_heads
from mlip.data import stats
from mlip.data.configuration import Configuration
from mlip.data.io import split_isolated
from mlip.data.ondisk import OnDiskDataset, OnDiskFile
from mlip.train.data_setup import build_hparams, hparams_from_statistics, load_datasets
from mlip.train.preprocess import preprocess_config


def test_resolve_heads_inherits_data_section(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("x.xyz", "y.xyz", "t.xyz"):
        (tmp_path / name).write_text("")  # the config checks that files exist; nothing is read here
    cfg = config_from_dict({
        "data": {"energy_key": "E", "forces_key": "F", "e0s": "fit", "valid_fraction": 0.2,
                 "config_type_weights": {"a": 2.0},
                 "heads": {"one": {"train": ["x.xyz"]},
                           "two": {"train": ["y.xyz"], "energy_key": "E2", "e0s": {"H": -1.0},
                                   "valid_fraction": 0.5, "config_type_weights": {"a": 3.0, "b": 4.0}}}},
        "model": dict(TINY_MODEL),
    })
    heads = resolve_heads(cfg)
    assert list(heads) == ["one", "two"]
    one, two = heads["one"], heads["two"]
    assert (one.energy_key, one.forces_key, one.e0s, one.valid_fraction) == ("E", "F", "fit", 0.2)
    assert (two.energy_key, two.forces_key, two.e0s, two.valid_fraction) == ("E2", "F", {"H": -1.0}, 0.5)
    assert one.config_type_weights == {"a": 2.0} and two.config_type_weights == {"a": 3.0, "b": 4.0}
    assert one.test == [] and two.test == []  # with data.heads the data section's test files are not inherited
    single = resolve_heads(config_from_dict({"data": {"train": ["x.xyz"], "test": ["t.xyz"]}, "model": dict(TINY_MODEL)}))
    assert list(single) == ["Default"] and single["Default"].train == ["x.xyz"] and single["Default"].test == ["t.xyz"]


def _frame(numbers, pbc=False, config_type="Default") -> Configuration:
    n = len(numbers)
    cell = np.eye(3) * 5.0 if pbc else np.zeros((3, 3))
    return Configuration(numbers=numbers, positions=np.arange(3 * n, dtype=float).reshape(n, 3),
                         cell=cell, pbc=[pbc] * 3, config_type=config_type)


def test_split_isolated_keeps_order():
    frames = [_frame([1, 8]), _frame([1]), _frame([6], pbc=True), _frame([8, 8], config_type="IsolatedAtom"),
              _frame([6, 1])]
    molecular, isolated = split_isolated(frames)
    assert molecular == [frames[0], frames[2], frames[4]]  # a periodic single atom is a crystal, not an E0 frame
    assert isolated == [frames[1], frames[3]]


def test_record_scale_shift_and_json_by_hand():
    record = stats.make_record({1: -1.5, 8: -2.0}, "fit", n_frames=3, n_atoms=4, n_edges=10, rms_forces=0.5,
                               mean=-0.25, std=0.0, label_counts={"energy": 3})
    assert record["avg_num_neighbors"] == 2.5
    assert stats.scale_shift(record, "rms_forces") == (0.5, -0.25)
    assert stats.scale_shift(record, "std") == (1.0, -0.25)  # zero spread: scale 1
    assert stats.scale_shift(record, "none") == (1.0, -0.25)
    assert stats.scale_shift(record, "rms_forces", "none") == (0.5, 0.0)  # model.shifting: none
    stored = stats.to_json(record)
    assert stored["e0s"] == {"1": -1.5, "8": -2.0}
    assert stats.from_json(stored) == record
    other = stats.make_record({}, None, 1, 6, 2, None, None, None, {})
    assert stats.mean_neighbours([record, other]) == pytest.approx(12 / 10)
    assert stats.mean_neighbours([other | {"n_edges": 0}]) == 1.0  # no neighbours at all: 1


@pytest.mark.parametrize("scaling", ["rms_forces", "std"])
def test_in_memory_and_ondisk_hyperparameters_agree(acac_small, tmp_path: Path, scaling: str):
    """The same frames give the same E0s, scale, shift and neighbour count whether they are read into
    memory or preprocessed into an .h5 file (statistics streamed, stored, read back)."""
    data = {"train": str(acac_small["train"]), "valid_fraction": 0.0, "e0s": "isolated",
            "isolated_atoms": str(acac_small["isolated"])}
    cfg = config_from_dict({"data": data, "model": {**TINY_MODEL, "scaling": scaling}, "seed": 1})
    memory = build_hparams(cfg, load_datasets(cfg, lambda s: None), lambda s: None)
    written = preprocess_config(cfg, tmp_path / "h5", progress=False, log=lambda s: None)
    cfg_h5 = config_from_dict({"data": {"train": str(written["train"]), "valid_fraction": 0.0, "e0s": "isolated"},
                               "model": {**TINY_MODEL, "scaling": scaling}, "seed": 1})
    files = [OnDiskFile(written["train"])]
    disk = hparams_from_statistics(cfg_h5, files, ["Default"], OnDiskDataset(written["train"], 4.0),
                                   lambda s: None)
    assert memory.atomic_numbers == disk.atomic_numbers == [1, 6, 8]
    np.testing.assert_allclose(memory.atomic_energies, disk.atomic_energies, rtol=0, atol=0)
    np.testing.assert_allclose(memory.shift, disk.shift, rtol=1e-10)
    np.testing.assert_allclose(memory.scale, disk.scale, rtol=1e-8)
    assert memory.avg_num_neighbors == disk.avg_num_neighbors
    assert memory.scale[0] != 1.0 and memory.avg_num_neighbors > 1.0  # real statistics, not the fallbacks
