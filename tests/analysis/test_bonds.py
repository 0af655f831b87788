"""Bonds, D/A pairing, H_2D against hand calculations, RDKit orders (optional), the mlip-bonds CLI."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from e3d_support import ACAC, acetylacetone, tiny_model

from mlip.analysis.bonds import bond_label, bonds_from_edges, detect_bonds, entropy_2d, rdkit_bond_orders


def test_entropy_2d_against_hand_histogram():
    d = np.array([0.05, 0.07, 0.15, -0.05])
    a = np.array([0.01, 0.02, 0.03, 0.04])
    # cells (0,0), (0,0), (1,0), (-1,0): p = 1/2, 1/4, 1/4
    assert entropy_2d(d, a) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)), abs=1e-14)
    # A spreads the same D into different cells: four distinct cells -> ln 4
    assert entropy_2d(d, np.array([0.05, 0.15, 0.25, 0.35])) == pytest.approx(math.log(4), abs=1e-14)
    assert entropy_2d(np.array([1.23] * 7), np.array([0.0] * 7)) == 0.0
    assert entropy_2d(np.array([]), np.array([])) == 0.0


def test_labels_and_detection():
    assert bond_label(1, 6, 1) == "C-H" and bond_label(6, 1, 1) == "C-H"
    assert bond_label(8, 1, 1) == "O-H" and bond_label(8, 6, 2) == "C=O" and bond_label(6, 6, 0) == "C~C"
    # covalent radii (ASE): H 0.31, C 0.76, O 0.66; 1.2 * sum, capped at 2.2 A
    mask = detect_bonds(np.array([6, 6, 1, 6, 8]), np.array([1, 6, 8, 8, 8]), np.array([1.10, 1.50, 1.60, 1.70, 1.50]))
    assert mask.tolist() == [True, True, False, True, True]
    assert not detect_bonds(np.array([53]), np.array([53]), np.array([2.3]))[0]  # I-I: 1.2*2*1.39 > 2.2 cap


def _pairs(eps_01, eps_10, z0, z1):
    """Two atoms at 1.2 A: edge 1 -> 0 (receiver 0) and 0 -> 1."""
    return bonds_from_edges(
        structure=[0, 0], receiver=[0, 1], sender=[1, 0], shifts=np.zeros((2, 3)), z_receiver=[z0, z1],
        z_sender=[z1, z0], r=[1.2, 1.2], eps=[eps_01, eps_10],
    )


def test_d_symmetric_a_antisymmetric_under_swap():
    b = _pairs(-1.0, -2.5, 6, 6)
    assert b.d.tolist() == [-3.5] and b.a.tolist() == [1.5] and b.label.tolist() == ["C~C"]
    swapped = _pairs(-2.5, -1.0, 6, 6)  # atoms 0 and 1 exchanged
    assert swapped.d.tolist() == b.d.tolist() and swapped.a.tolist() == (-b.a).tolist()
    # hetero bond: i is C whatever its index, so A keeps its meaning (eps at C minus eps at H)
    ch = _pairs(-3.0, -1.0, 6, 1)
    hc = _pairs(-1.0, -3.0, 1, 6)
    assert ch.label.tolist() == hc.label.tolist() == ["C-H"]
    assert ch.d.tolist() == hc.d.tolist() == [-4.0] and ch.a.tolist() == hc.a.tolist() == [-2.0]
    assert ch.order.tolist() == [1]


def test_unpaired_and_long_edges_are_not_bonds():
    b = bonds_from_edges([0, 0, 0], [0, 1, 2], [1, 0, 0], np.zeros((3, 3)), [6, 6, 6], [6, 6, 6],
                         [1.5, 1.5, 2.5], [-1.0, -1.0, -0.3])
    assert len(b.d) == 1  # 0-1 only; 0->2 is unpaired and too long


def test_rdkit_orders_of_acetylacetone():
    pytest.importorskip("rdkit", reason="rdkit is in the 'test' extra: pip install -e '.[test]'")
    if not ACAC.is_file():
        pytest.skip("bundled data/acac missing")
    numbers, positions = acetylacetone()
    d = np.linalg.norm(positions[None] - positions[:, None], axis=-1)
    i, j = np.nonzero(np.triu(d < 2.2, 1))
    m = detect_bonds(numbers[i], numbers[j], d[i, j])
    orders = rdkit_bond_orders(numbers, positions, list(zip(i[m].tolist(), j[m].tolist())))
    assert orders is not None
    labels = sorted(bond_label(numbers[a], numbers[b], o) for (a, b), o in orders.items())
    # enol acetylacetone C5H8O2: CH3-C(=O)-CH=C(OH)-CH3
    assert labels.count("C=O") == 1 and labels.count("C=C") == 1 and labels.count("C-O") == 1
    assert labels.count("O-H") == 1 and labels.count("C-H") == 7 and labels.count("C-C") == 3


def test_without_rdkit_bonds_are_typed(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "rdkit", None)  # import rdkit now raises ImportError
    assert rdkit_bond_orders(np.array([6, 6]), np.zeros((2, 3)), [(0, 1)]) is None
    b = bonds_from_edges([0, 0], [0, 1], [1, 0], np.zeros((2, 3)), [6, 6], [6, 6], [1.4, 1.4], [-1.0, -1.0], None)
    assert b.label.tolist() == ["C~C"] and b.order.tolist() == [0]


def test_mlip_bonds_cli(tmp_path):
    if not ACAC.is_file():
        pytest.skip("bundled data/acac missing")
    import ase.io

    from mlip.cli.bonds import main
    from mlip.io.model_file import save_model

    frames = ase.io.read(ACAC, index=":2")
    data = tmp_path / "two.xyz"
    ase.io.write(data, frames)
    model = tiny_model(edge_energy_readout=True, pair_repulsion=True)
    save_model(model, tmp_path / "m.pt")
    for method in ("readout", "attribution"):
        out = tmp_path / method
        assert main(["--model", str(tmp_path / "m.pt"), "--data", str(data), "--method", method, "--nodes", "8",
                     "--output", str(out)]) == 0
        for name in ("edges.csv", "summary.json", "bonds.csv", "bond_table.csv", "bond_table.md", "d_histograms.png",
                     "da_maps.png"):
            assert (out / name).is_file(), name
        summary = json.loads((out / "summary.json").read_text())
        assert summary["max_completeness_error"] < 1e-8
        with open(out / "edges.csv") as fh:
            edges = list(csv.DictReader(fh))
        for k, s in enumerate(summary["structures"]):
            eps = sum(float(e["eps"]) for e in edges if int(e["structure"]) == k)
            assert eps == pytest.approx(s["sum_eps"], abs=1e-8)
            assert s["sum_eps"] + s["self_energy"] == pytest.approx(s["e_coh"], abs=1e-8)
            assert s["e_coh_ref"] == pytest.approx(frames[k].get_potential_energy() - sum(
                {1: -13.568, 6: -1026.854, 8: -2037.797}[int(z)] for z in frames[k].numbers), abs=1e-6)
        with open(out / "bonds.csv") as fh:
            bonds = list(csv.DictReader(fh))
        assert len(bonds) == 2 * 14  # 14 covalent bonds in C5H8O2
        table = (out / "bond_table.csv").read_text()
        assert table.startswith("# reference: mean bond enthalpies")
    bad = main(["--model", str(tmp_path / "m.pt"), "--data", str(tmp_path / "missing.xyz"), "--output", str(tmp_path / "x")])
    assert bad == 2
