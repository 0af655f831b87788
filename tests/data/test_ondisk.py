"""On-disk (HDF5) datasets: graphs and statistics equal the in-memory pipeline, lazy/bounded memory,
loaders with workers, corrupt files give one-line DataErrors, mlip-preprocess and training on .h5."""

from __future__ import annotations

import dataclasses
import json
import pickle
import weakref
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from mlip.data.batch import collate, make_loader
from mlip.data.configuration import Configuration
from mlip.data.graph import configuration_to_graph
from mlip.data.ondisk import OnDiskDataset, make_ondisk_loader, write_ondisk
from mlip.data.stats import compute_statistics
from mlip.errors import DataError

REPO = Path(__file__).resolve().parents[2]
R_MAX = 3.0


def synthetic(n: int, seed: int = 0, heads=("A", "B")) -> list[Configuration]:
    """Small molecules and crystals with every label pattern (missing energy/forces/stress, weights)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        n_atoms = int(rng.integers(2, 7))
        periodic = k % 3 == 0
        cell = np.diag(rng.uniform(4.0, 6.0, 3)) + rng.normal(0, 0.2, (3, 3)) if periodic else np.zeros((3, 3))
        grid = np.stack(np.meshgrid(*[np.arange(2)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n_atoms] * 1.6
        pos = grid + rng.normal(0, 0.1, (n_atoms, 3))
        out.append(Configuration(
            numbers=rng.choice([1, 6, 8], n_atoms), positions=pos, cell=cell, pbc=np.array([periodic] * 3),
            energy=None if k % 7 == 5 else float(rng.normal(-10 * n_atoms, 1.0)),
            forces=None if k % 5 == 4 else rng.normal(0, 1, (n_atoms, 3)),
            stress=rng.normal(0, 0.01, (3, 3)) if periodic and k % 2 == 0 else None,
            virials=rng.normal(0, 0.1, (3, 3)) if k % 11 == 3 else None,
            weight=float(rng.uniform(0.5, 2)), property_weights={"forces": float(rng.uniform(0.5, 1.5))},
            config_type=f"type{k % 3}", head=heads[k % len(heads)], source=f"syn:{k}",
        ))
    return out


def _assert_graph_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def syn_file(tmp_path_factory) -> tuple[Path, list[Configuration]]:
    configs = synthetic(60)
    path = tmp_path_factory.mktemp("ondisk") / "syn.h5"
    write_ondisk(iter(configs), path, R_MAX, e0s="fit", progress=False, chunk=16)
    return path, configs


def test_graphs_equal_configuration_to_graph(syn_file):
    path, configs = syn_file
    ds = OnDiskDataset(path, R_MAX, heads=["A", "B"])
    assert len(ds) == len(configs)
    for i, c in enumerate(configs):
        _assert_graph_equal(ds[i], configuration_to_graph(c, R_MAX, ["A", "B"]))
    # another cutoff at read time: the neighbour lists are computed on the fly
    big = OnDiskDataset(path, 4.5, heads=["A", "B"])
    _assert_graph_equal(big[3], configuration_to_graph(configs[3], 4.5, ["A", "B"]))
    assert big.graph_sizes(exact_edges=True)[3, 1] == configuration_to_graph(configs[3], 4.5, ["A", "B"])["edge_index"].shape[1]
    assert ds.graph_sizes()[3, 1] == configuration_to_graph(configs[3], R_MAX, ["A", "B"])["edge_index"].shape[1]
    config_types = ds.config_types()
    assert [config_types[i] for i in range(len(ds))] == [c.config_type for c in configs]
    sub = ds.subset([5, 2, 40])
    _assert_graph_equal(sub[1], configuration_to_graph(configs[2], R_MAX, ["A", "B"]))
    _assert_graph_equal(ds[1::2][3], configuration_to_graph(configs[7], R_MAX, ["A", "B"]))


def test_statistics_match_in_memory(syn_file):
    path, configs = syn_file
    stored = json.loads(h5py.File(path, "r").attrs["statistics"])
    ref = compute_statistics(configs, R_MAX, [1, 6, 8], "fit", heads=["A", "B"])
    for head in ("A", "B"):
        s, r = stored[head], ref[head]
        for z in (1, 6, 8):
            assert s["e0s"][str(z)] == pytest.approx(r["e0s"][z], rel=1e-9)
        for key in ("avg_num_neighbors", "rms_forces", "mean_interaction_energy", "std_interaction_energy"):
            assert s[key] == pytest.approx(r[key], rel=1e-9), key
        assert s["n_frames"] == r["n_frames"]
        # label counts by hand
        mine = [c for c in configs if c.head == head]
        assert s["label_counts"] == {p: sum(c.has(p) for c in mine) for p in ("energy", "forces", "stress", "virials")}


def test_isolated_e0s_and_mapping(tmp_path):
    configs = synthetic(20, heads=("Default",))
    iso = [Configuration(numbers=[z], positions=[[0, 0, 0]], energy=e, config_type="IsolatedAtom")
           for z, e in ((1, -1.5), (6, -7.25), (8, -9.0))]
    path = write_ondisk(iter(configs[:10] + iso + configs[10:]), tmp_path / "iso.h5", R_MAX, "isolated",
                        progress=False)
    ds = OnDiskDataset(path, R_MAX)
    assert len(ds) == 20  # isolated atoms set apart, not training frames
    st = ds.files[0].statistics["Default"]
    assert st["e0s"] == {"1": -1.5, "6": -7.25, "8": -9.0}
    ref = compute_statistics(configs + iso, R_MAX, [1, 6, 8], "isolated")["Default"]
    assert st["mean_interaction_energy"] == pytest.approx(ref["mean_interaction_energy"], rel=1e-12)
    mapped = write_ondisk(iter(configs), tmp_path / "map.h5", R_MAX, {"H": 1.0, "C": 2.0, "O": 3.0}, progress=False)
    assert OnDiskDataset(mapped, R_MAX).files[0].statistics["Default"]["e0s"] == {"1": 1.0, "6": 2.0, "8": 3.0}


def test_loader_with_workers_equals_in_memory_loader(syn_file):
    path, configs = syn_file
    graphs = [configuration_to_graph(c, R_MAX, ["A", "B"]) for c in configs]
    mem = make_loader(graphs, 7, shuffle=True, seed=3, max_atoms=30)
    disk = make_ondisk_loader(OnDiskDataset(path, R_MAX, ["A", "B"]), 7, shuffle=True, seed=3, max_atoms=30,
                              num_workers=2)
    for epoch in (1, 2):
        mem.set_epoch(epoch)
        disk.set_epoch(epoch)
        a, b = list(mem), list(disk)
        assert len(a) == len(b) == len(disk) > 1
        for x, y in zip(a, b):
            assert x.keys() == y.keys()
            for key in x:
                assert torch.equal(x[key], y[key]), key


def test_dataset_holds_no_per_frame_data(tmp_path):
    small = write_ondisk(iter(synthetic(200, 1)), tmp_path / "small.h5", R_MAX, progress=False)
    large = write_ondisk(iter(synthetic(2000, 1)), tmp_path / "large.h5", R_MAX, progress=False)
    a, b = OnDiskDataset(small, R_MAX), OnDiskDataset(large, R_MAX)
    a[0], b[0]  # open the files
    size_a, size_b = len(pickle.dumps(a)), len(pickle.dumps(b))
    assert size_b < size_a + 200  # the same metadata, not 10x the frames
    assert pickle.loads(pickle.dumps(b))._handles == {}  # handles are reopened per process


def test_writing_streams_frames(tmp_path):
    """The writer keeps at most one buffer of frames alive: earlier frames' arrays are freed while the
    input generator is still running (so all frames are never in memory at once)."""
    pool = synthetic(20, 2)
    alive: list[weakref.ref] = []
    most_alive = 0

    def frames():
        nonlocal most_alive
        for k in range(400):
            c = dataclasses.replace(pool[k % len(pool)])
            c.positions = c.positions.copy()
            alive.append(weakref.ref(c.positions))
            yield c
            most_alive = max(most_alive, sum(r() is not None for r in alive))

    path = write_ondisk(frames(), tmp_path / "s.h5", R_MAX, progress=False, chunk=32)
    assert most_alive <= 32 + 1
    assert len(OnDiskDataset(path, R_MAX)) == 400


# ------------------------------------------------------------------------------------------ errors
def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_corrupt_files_give_clear_errors(syn_file, tmp_path):
    path, _ = syn_file
    data = path.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an hdf5 file at all" * 10)
    for bad in (truncated, garbage, tmp_path / "missing.h5"):
        with pytest.raises(DataError) as err:
            OnDiskDataset(bad, R_MAX)
        assert str(bad) in _one_line(err)
    wrong = tmp_path / "wrong.h5"
    wrong.write_bytes(data)
    with h5py.File(wrong, "a") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(DataError, match="not an mlip on-disk dataset"):
        OnDiskDataset(wrong, R_MAX)
    for attr, value, match in (("complete", False, "incomplete"), ("version", 99, "version 99")):
        bad = tmp_path / f"{attr}.h5"
        bad.write_bytes(data)
        with h5py.File(bad, "a") as f:
            f.attrs[attr] = value
        with pytest.raises(DataError, match=match):
            OnDiskDataset(bad, R_MAX)
    short = tmp_path / "short.h5"
    short.write_bytes(data)
    with h5py.File(short, "a") as f:
        f["positions"].resize(10, axis=0)
    with pytest.raises(DataError, match="key 'positions'.*truncated"):
        OnDiskDataset(short, R_MAX)


def test_file_broken_after_opening_fails_in_worker_with_data_error(syn_file, tmp_path):
    path, _ = syn_file
    copy = tmp_path / "copy.h5"
    copy.write_bytes(path.read_bytes())
    loader = make_ondisk_loader(OnDiskDataset(copy, R_MAX, ["A", "B"]), 8, shuffle=False, num_workers=2)
    copy.write_bytes(b"\0" * 4096)  # clobbered while training
    with pytest.raises(DataError) as err:
        list(loader)
    msg = _one_line(err)
    assert str(copy) in msg and "corrupt" in msg


def test_interrupted_write_leaves_no_file(tmp_path):
    def frames():
        yield from synthetic(5)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_ondisk(frames(), tmp_path / "x.h5", R_MAX, progress=False)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ CLI + training
def test_preprocess_cli_and_training_on_h5_matches_in_memory(tmp_path):
    acac = REPO / "data" / "acac"
    if not (acac / "train.xyz").is_file():
        pytest.skip("bundled data/acac missing")
    import yaml

    from mlip.cli.preprocess import main as preprocess
    from mlip.config import config_from_dict
    from mlip.train.run import train

    lines = (acac / "train.xyz").read_text().splitlines(keepends=True)
    (tmp_path / "train.xyz").write_text("".join(lines[: 17 * 12]))
    (tmp_path / "valid.xyz").write_text("".join(lines[17 * 12: 17 * 16]))
    base = {
        "data": {"train": str(tmp_path / "train.xyz"), "valid": str(tmp_path / "valid.xyz"), "e0s": "isolated",
                 "isolated_atoms": str(acac / "isolated_atoms.xyz")},
        "model": {"hidden_irreps": "4x0e + 4x1o", "max_ell": 1, "correlation": 2, "num_interactions": 1,
                  "r_max": 4.0, "num_bessel": 4, "radial_mlp": [8], "mlp_irreps": "4x0e"},
        "train": {"max_epochs": 2, "batch_size": 4, "progress": False, "plot": False},
        "output_dir": str(tmp_path / "mem"), "device": "cpu", "dtype": "float64", "seed": 2,
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(base))
    assert preprocess(["--config", str(tmp_path / "c.yaml"), "-o", str(tmp_path / "h5"), "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "h5").iterdir()) == ["train.h5", "valid.h5"]
    disk = json.loads(json.dumps(base))
    disk["data"].update(train=str(tmp_path / "h5" / "train.h5"), valid=str(tmp_path / "h5" / "valid.h5"),
                        num_workers=1)
    disk["output_dir"] = str(tmp_path / "disk")
    train(config_from_dict(base), log=lambda s: None)
    train(config_from_dict(disk), log=lambda s: None)
    m_mem, m_disk = ([json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
                     for d in ("mem", "disk"))
    assert len(m_mem) == len(m_disk) == 2
    for a, b in zip(m_mem, m_disk):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-10)
        assert b["valid_loss"] == pytest.approx(a["valid_loss"], rel=1e-10)
    # input errors of the CLI are one line with exit status 2
    assert preprocess(["--data", str(tmp_path / "nope.xyz"), "-o", str(tmp_path / "x.h5")]) == 2
    assert preprocess(["--data", str(tmp_path / "train.xyz"), "-o", str(tmp_path / "x.txt")]) == 2
