"""The bundled data slices: small, licensed, readable, and faithful copies of ../shared/data."""

from __future__ import annotations

import pickle

import pytest

from data_testlib import DATA, SHARED
from mlip.data.batch import Collater, GraphBatchSampler
from mlip.data.io import read_configurations


def test_bundle_small_and_licensed():
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert total < 1_000_000
    acac = (DATA / "acac" / "README.md").read_text()
    assert "MIT" in acac and "arXiv:2205.06643" in acac and "Permission is hereby granted" in acac
    si = (DATA / "si" / "README.md").read_text()
    assert "BSD" in si and "J. Phys. Chem. A 124, 731" in si and "Redistribution and use" in si


def test_bundle_counts_and_labels():
    assert len(read_configurations(DATA / "acac" / "train.xyz", required=("energy", "forces"))) == 100
    assert len(read_configurations(DATA / "acac" / "test.xyz", required=("energy", "forces"))) == 50
    si = read_configurations(DATA / "si" / "test.xyz", required=("energy", "forces", "stress"))
    assert len(si) == 5


def test_bundle_matches_shared_source():
    source = SHARED / "data" / "acac"
    if not source.is_dir():
        pytest.skip("../shared/data is not present (fresh clone)")
    bundled = (DATA / "acac" / "train.xyz").read_text()
    original = (source / "train_300K.xyz").read_text()
    assert original.startswith(bundled)
    assert bundled.count("Properties=") == 100
    test = (DATA / "acac" / "test.xyz").read_text()
    assert (source / "test_MD_300K.xyz").read_text().startswith(test)
    assert (DATA / "acac" / "isolated_atoms.xyz").read_bytes() == (source / "isolated_atoms.xyz").read_bytes()
    si_source = (SHARED / "data" / "si" / "train.xyz").read_text()
    for line in (DATA / "si" / "train.xyz").read_text().splitlines():
        if "Lattice=" in line:
            assert line in si_source


def test_loader_parts_picklable_for_workers():
    sampler = GraphBatchSampler([(3, 4), (5, 6)], batch_size=1, shuffle=True, seed=2)
    sampler.set_epoch(3)
    clone = pickle.loads(pickle.dumps(sampler))
    assert clone.batches() == sampler.batches()
    pickle.loads(pickle.dumps(Collater()))
