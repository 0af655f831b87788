"""Splits, label coverage table and the coverage check."""

from __future__ import annotations

import pytest

from data_testlib import DATA, random_configuration
from mlip.data.coverage import check_coverage, format_coverage_table, label_coverage
from mlip.data.splits import load_splits, random_split
from mlip.errors import DataError


def test_random_split_deterministic_and_disjoint():
    configs = [random_configuration(s, 3) for s in range(20)]
    train, valid = random_split(configs, 0.25, seed=4)
    assert len(valid) == 5 and len(train) == 15
    assert {id(c) for c in train}.isdisjoint({id(c) for c in valid})
    again = random_split(configs, 0.25, seed=4)
    assert [c.source for c in again[1]] == [c.source for c in valid]
    other = random_split(configs, 0.25, seed=5)
    assert [c.source for c in other[1]] != [c.source for c in valid]
    with pytest.raises(DataError):
        random_split(configs[:1], 0.5)


def test_load_splits_with_files():
    splits = load_splits(DATA / "acac" / "train.xyz", valid_fraction=0.1, seed=0,
                         test_files=[DATA / "acac" / "test.xyz", DATA / "si" / "test.xyz"])
    assert len(splits["train"]) == 90 and len(splits["valid"]) == 10
    assert len(splits["test:test"]) == 50 and len(splits["test:si/test"]) == 5
    explicit = load_splits(DATA / "si" / "train.xyz", valid_file=DATA / "si" / "test.xyz")
    assert len(explicit["train"]) == 12 and len(explicit["valid"]) == 5


def make_splits():
    train = [random_configuration(s, 3, periodic=True, head="a") for s in range(4)]
    train += [random_configuration(s, 3, periodic=False, head="b") for s in range(4, 7)]
    train[0].forces = None
    valid = [random_configuration(9, 3, periodic=False, head="a")]
    return {"train": train, "valid": valid, "test": []}


def test_label_coverage_counts():
    rows = {(r.split, r.head): r for r in label_coverage(make_splits())}
    assert (rows["train", "a"].frames, rows["train", "a"].energy, rows["train", "a"].forces, rows["train", "a"].stress) == (4, 4, 3, 4)
    assert (rows["train", "b"].frames, rows["train", "b"].stress) == (3, 0)
    assert (rows["valid", "a"].frames, rows["valid", "a"].stress) == (1, 0)
    assert rows["test", "-"].frames == 0
    table = format_coverage_table(make_splits())
    lines = table.splitlines()
    assert lines[0].split() == ["split", "head", "frames", "energy", "forces", "stress", "virials"]
    assert lines[2].split() == ["train", "a", "4", "4", "3", "4", "0"]


def test_check_coverage_errors_name_split_head_property():
    splits = make_splits()
    check_coverage(splits, {"energy": 1.0, "forces": 10.0, "stress": 0.0})
    with pytest.raises(DataError) as err:
        check_coverage(splits, {"energy": 1.0, "forces": 10.0, "stress": 10.0})
    message = str(err.value)
    assert "split 'train'" in message and "head 'b'" in message and "key 'stress'" in message
    splits["train"] = [c for c in splits["train"] if c.head == "a"]
    with pytest.raises(DataError) as err:
        check_coverage(splits, {"stress": 1.0})
    assert "split 'valid'" in str(err.value) and "head 'a'" in str(err.value)
    with pytest.raises(DataError, match="virials"):
        check_coverage(splits, {"virials": 1.0})
