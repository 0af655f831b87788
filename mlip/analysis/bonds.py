"""Bonds from edge energies: detection, bond orders, ``D``/``A`` per bond, ``H_2D`` and reference values.

E3D (Hattori et al.): for a bond between atoms ``i`` and ``j`` with directed edge energies
``eps_ij`` (edge ``j -> i``) and ``eps_ji``::

    D_ij = eps_ij + eps_ji        (bond energy, eV; negative for a binding bond)
    A_ij = eps_ij - eps_ji        (asymmetry of the two ends, eV)

``i`` is the first element of the bond label (``C`` in ``C-H``, ``O`` in ``O-H``); for a homonuclear
bond ``i`` is the lower atom index, so the sign of ``A`` is arbitrary there.

Bonds: pairs closer than ``min(max_distance, factor * (R_cov(Z_i) + R_cov(Z_j)))`` with ASE's covalent
radii (``factor = 1.2``, ``max_distance = 2.2`` A). Bond orders come from RDKit's
``rdDetermineBonds.DetermineBondOrders`` when RDKit is importable (an optional dependency); otherwise
bonds are labelled by type only (``C~C``), except bonds to H, which are single.
"""

from __future__ import annotations

from dataclasses import dataclass

import ase.data
import numpy as np

#: Mean bond enthalpies (eV) from the average-bond-enthalpy tables of general-chemistry textbooks, in kJ/mol:
#: C-H 413, C-C 348, C=C 614, C-O 358, C=O 745 (carbonyl) to 799 (CO2), O-H 463, N-H 391; converted with
#: 1 kJ/mol = 0.010364 eV (docs/e3d.md, "Reference values"). Ranges are (low, high).
REFERENCE_BOND_ENERGIES: dict[str, tuple[float, float]] = {
    "C-H": (4.28, 4.28),
    "C-C": (3.61, 3.61),
    "C=C": (6.36, 6.36),
    "C-O": (3.71, 3.71),
    "C=O": (7.7, 8.3),
    "O-H": (4.80, 4.80),
    "N-H": (4.05, 4.05),
}
REFERENCE_SOURCE = (
    "mean bond enthalpies from standard tables (average bond enthalpies, e.g. C-H 413, C-C 348, C=C 614, "
    "C-O 358, C=O 745-799, O-H 463, N-H 391 kJ/mol), converted to eV (1 kJ/mol = 0.010364 eV)"
)
ORDER_SYMBOL = {1: "-", 2: "=", 3: "#", 0: "~"}
BIN_WIDTH = 0.1


def _element_rank(z: int) -> tuple[int, int]:
    """Label order: C first, H last, otherwise heavier first (``C-O``, ``O-H``, ``N-H``, ``C-N``)."""
    return (0 if z == 6 else 2 if z == 1 else 1, -z)


def bond_label(z_i: int, z_j: int, order: int) -> str:
    """``C-H``, ``C=O``, ``O-H``; ``order`` 0 means unknown (``C~O``)."""
    a, b = sorted((int(z_i), int(z_j)), key=_element_rank)
    return f"{ase.data.chemical_symbols[a]}{ORDER_SYMBOL.get(order, '~')}{ase.data.chemical_symbols[b]}"


def detect_bonds(
    z_i: np.ndarray, z_j: np.ndarray, distances: np.ndarray, factor: float = 1.2, max_distance: float = 2.2
) -> np.ndarray:
    """Mask ``[P]``: pairs of atomic numbers ``z_i, z_j [P]`` at ``distances [P]`` (A) that are bonds."""
    radii = np.asarray(ase.data.covalent_radii)
    limit = np.minimum(max_distance, factor * (radii[np.asarray(z_i)] + radii[np.asarray(z_j)]))
    return np.asarray(distances) < limit


def rdkit_bond_orders(numbers: np.ndarray, positions: np.ndarray, bonds: list[tuple[int, int]], charge: int = 0) -> dict | None:
    """Bond order ``{(i, j): 1|2|3}`` (``i < j``) from RDKit for the given connectivity, or ``None``
    when RDKit is not installed or cannot assign orders (odd valences, radicals, transition states)."""
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import rdDetermineBonds
    except ImportError:
        return None
    RDLogger.DisableLog("rdApp.*")
    try:
        mol = Chem.RWMol()
        for z in numbers:
            mol.AddAtom(Chem.Atom(int(z)))
        for i, j in bonds:
            mol.AddBond(int(i), int(j), Chem.BondType.SINGLE)
        conf = Chem.Conformer(len(numbers))
        for k, p in enumerate(positions):
            conf.SetAtomPosition(k, [float(c) for c in p])
        mol.AddConformer(conf, assignId=True)
        m = mol.GetMol()
        rdDetermineBonds.DetermineBondOrders(m, charge=charge)
        Chem.Kekulize(m, clearAromaticFlags=True)
    except Exception:  # RDKit raises several types for unassignable structures
        return None
    out = {}
    for b in m.GetBonds():
        i, j = sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))
        out[(i, j)] = int(round(b.GetBondTypeAsDouble()))
    return out


@dataclass
class BondTable:
    """Bonds of many structures (P bonds). ``i`` is the first atom of ``label`` (see module docstring)."""

    structure: np.ndarray
    i: np.ndarray
    j: np.ndarray
    z_i: np.ndarray
    z_j: np.ndarray
    r: np.ndarray
    order: np.ndarray
    label: np.ndarray
    d: np.ndarray
    a: np.ndarray


def bonds_from_edges(
    structure: np.ndarray,
    receiver: np.ndarray,
    sender: np.ndarray,
    shifts: np.ndarray,
    z_receiver: np.ndarray,
    z_sender: np.ndarray,
    r: np.ndarray,
    eps: np.ndarray,
    orders: dict[tuple[int, int, int], int] | None = None,
    factor: float = 1.2,
    max_distance: float = 2.2,
) -> BondTable:
    """Pair the directed edges ``j -> i`` and ``i -> j`` of every bond and compute ``D`` and ``A``.

    Args (E directed edges; atom indices within each structure): ``structure [E]``, ``receiver [E]``
    (``i``), ``sender [E]`` (``j``), ``shifts [E,3]`` integer lattice shifts, ``z_receiver``/``z_sender
    [E]``, ``r [E]`` (A), ``eps [E]`` (eV); ``orders`` maps ``(structure, min atom, max atom)`` to a
    bond order (missing: 0 = unknown; bonds to H are single).
    """
    structure, receiver, sender = (np.asarray(x, dtype=np.int64) for x in (structure, receiver, sender))
    z_receiver, z_sender = np.asarray(z_receiver, dtype=np.int64), np.asarray(z_sender, dtype=np.int64)
    r, eps = np.asarray(r, dtype=np.float64), np.asarray(eps, dtype=np.float64)
    sh = np.rint(np.asarray(shifts, dtype=np.float64).reshape(-1, 3)).astype(np.int64)
    key_of = {(int(structure[e]), int(receiver[e]), int(sender[e]), *sh[e].tolist()): e for e in range(len(r))}
    bond = detect_bonds(z_receiver, z_sender, r, factor, max_distance)
    fw_list, bw_list = [], []
    for e in np.nonzero(bond)[0]:
        i, j = int(receiver[e]), int(sender[e])
        rev = key_of.get((int(structure[e]), j, i, *(-sh[e]).tolist()))
        if rev is None:
            continue
        # one row per bond: i is the first element in label order, the lower index for equal elements
        rank_i, rank_j = (_element_rank(int(z_receiver[e])), i), (_element_rank(int(z_sender[e])), j)
        if rank_i > rank_j or (i == j and tuple(sh[e].tolist()) < tuple((-sh[e]).tolist())):
            continue
        fw_list.append(e)
        bw_list.append(rev)
    fw, bw = np.asarray(fw_list, dtype=np.int64), np.asarray(bw_list, dtype=np.int64)
    st, i_idx, j_idx, z_i, z_j = structure[fw], receiver[fw], sender[fw], z_receiver[fw], z_sender[fw]
    order = np.zeros(len(fw), dtype=np.int64)
    for k in range(len(fw)):
        if orders is not None:
            order[k] = orders.get((int(st[k]), int(min(i_idx[k], j_idx[k])), int(max(i_idx[k], j_idx[k]))), 0)
        if order[k] == 0 and 1 in (int(z_i[k]), int(z_j[k])):
            order[k] = 1
    labels = np.array([bond_label(a, b, o) for a, b, o in zip(z_i, z_j, order)], dtype=object)
    return BondTable(
        structure=st, i=i_idx, j=j_idx, z_i=z_i, z_j=z_j, r=r[fw], order=order, label=labels,
        d=eps[fw] + eps[bw], a=eps[fw] - eps[bw],
    )


def entropy_2d(d: np.ndarray, a: np.ndarray, bin_width: float = BIN_WIDTH) -> float:
    """Shannon entropy ``H_2D = -sum p ln p`` (nats) of the (D, A) histogram with square bins of
    ``bin_width`` eV anchored at 0 (bin ``k`` holds ``k w <= x < (k+1) w``). Empty input gives 0."""
    d, a = np.asarray(d, dtype=np.float64), np.asarray(a, dtype=np.float64)
    if d.size == 0:
        return 0.0
    cells = np.stack([np.floor(d / bin_width), np.floor(a / bin_width)], axis=1).astype(np.int64)
    _, counts = np.unique(cells, axis=0, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def reference_energy(label: str) -> tuple[float, float] | None:
    """Tabulated mean bond enthalpy (low, high) in eV for ``label``, or ``None``."""
    return REFERENCE_BOND_ENERGIES.get(label)


def summarise(bonds: BondTable, bin_width: float = BIN_WIDTH) -> list[dict]:
    """One row per bond label: count, mean/std of D and A, mean r, H_2D and the reference energy.

    ``-mean D`` is the model's bond energy to compare with the (positive) tabulated value.
    """
    rows = []
    for label in sorted(set(bonds.label.tolist())):
        m = bonds.label == label
        ref = reference_energy(label)
        rows.append({
            "bond": label,
            "order": int(bonds.order[m][0]),
            "n": int(m.sum()),
            "r_mean": float(bonds.r[m].mean()),
            "D_mean": float(bonds.d[m].mean()),
            "D_std": float(bonds.d[m].std()),
            "A_mean": float(bonds.a[m].mean()),
            "A_std": float(bonds.a[m].std()),
            "H_2D": entropy_2d(bonds.d[m], bonds.a[m], bin_width),
            "reference": None if ref is None else (ref[0] if ref[0] == ref[1] else f"{ref[0]}-{ref[1]}"),
        })
    return rows
