"""The ``mlip-bonds`` report: edge energies of every frame, bonds, per-type statistics, H_2D, plots.

Files written to the output folder (each atomically):

* ``edges.csv``: ``structure, i, j, Z_i, Z_j, r, eps`` per directed edge ``j -> i`` (eV, A);
* ``summary.json``: per structure ``e_coh`` (model ``E - sum E0``), ``sum_eps``, ``self_energy``
  (``E(0) - sum E0``), ``completeness_error`` and ``e_coh_ref`` (from the file's energy when present),
  plus the largest completeness error and the settings;
* ``bonds.csv``: ``structure, i, j, Z_i, Z_j, bond, order, r, D, A`` per bond;
* ``bond_table.csv`` / ``bond_table.md``: mean/std of D per bond type and order, H_2D, the reference
  bond energies and their source;
* ``d_histograms.png``, ``da_maps.png``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mlip.analysis.attribution import EdgeEnergies, edge_energies
from mlip.analysis.bonds import BIN_WIDTH, REFERENCE_SOURCE, BondTable, bonds_from_edges, detect_bonds
from mlip.analysis.bonds import rdkit_bond_orders, summarise
from mlip.data import keys
from mlip.data.configuration import Configuration
from mlip.files import atomic_write_bytes
from mlip.inference import frame_chunks
from mlip.nn.heads import model_heads, select_head


def _write_atomic(path: Path, data: bytes | str) -> None:
    atomic_write_bytes(path, data.encode() if isinstance(data, str) else data)


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _fmt(x: Any) -> Any:
    """Floats with 10 significant digits (a negative zero as 0), anything else as it is (CSV cells)."""
    return f"{float(x) + 0.0:.10g}" if isinstance(x, (float, np.floating)) else x


def _f3(x: float) -> str:
    """Three decimals for the markdown table; a value that rounds to zero prints 0.000, never -0.000."""
    return f"{round(float(x), 3) + 0.0:.3f}"


def compute_edges(
    model: torch.nn.Module,
    configs: Sequence[Configuration],
    head: str,
    method: str,
    nodes: int,
    batch_size: int = 16,
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Edge energies of every configuration (with its ``head``).

    Returns ``edges`` (arrays over all directed edges: structure, i (receiver), j (sender), Z_i, Z_j,
    shift [E,3], r, eps) and one summary dict per structure.
    """
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("structure", "i", "j", "Z_i", "Z_j", "shift", "r", "eps")}
    per_structure: list[dict[str, Any]] = []
    for frames in frame_chunks(model, configs, head, batch_size):
        start, chunk, batch = frames.start, frames.configs, frames.batch
        res: EdgeEnergies = edge_energies(model, batch, method, nodes)
        ptr = batch[keys.PTR].cpu().numpy()
        s, r = batch[keys.EDGE_INDEX].cpu().numpy()
        g = res.edge_graph
        vec = (
            batch[keys.POSITIONS][r] - batch[keys.POSITIONS][s]
            + torch.einsum("ei,eij->ej", batch[keys.UNIT_SHIFTS], batch[keys.CELL][batch[keys.BATCH][s]])
        )
        cols["structure"].append(start + g)
        cols["i"].append(r - ptr[g])
        cols["j"].append(s - ptr[g])
        numbers = batch[keys.NUMBERS].cpu().numpy()
        cols["Z_i"].append(numbers[r])
        cols["Z_j"].append(numbers[s])
        cols["shift"].append(batch[keys.UNIT_SHIFTS].cpu().numpy())
        cols["r"].append(torch.linalg.norm(vec, dim=-1).detach().cpu().numpy().astype(np.float64))
        cols["eps"].append(res.eps)
        for b, c in enumerate(chunk):
            e0 = float(res.e0_sum[b])
            per_structure.append({
                "structure": start + b,
                "source": c.source,
                "n_atoms": int(c.n_atoms),
                "e_coh": float(res.e_coh[b]),
                "sum_eps": float(res.sum_eps[b]),
                "self_energy": float(res.self_energy[b]),
                "self_energy_per_atom": float(res.self_energy[b]) / max(int(c.n_atoms), 1),
                "completeness_error": float(res.completeness_error[b]),
                "e_coh_ref": None if c.energy is None else float(c.energy) - e0,
            })
    edges = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    return edges, per_structure


def bond_orders(configs: Sequence[Configuration], edges: dict[str, np.ndarray], factor: float, max_distance: float) -> dict | None:
    """RDKit bond orders for every non-periodic structure, keyed ``(structure, i, j)``; ``None`` without RDKit."""
    try:
        import rdkit  # noqa: F401
    except ImportError:
        return None
    out: dict[tuple[int, int, int], int] = {}
    zero_shift = ~np.any(edges["shift"] != 0, axis=1)
    mask = detect_bonds(edges["Z_i"], edges["Z_j"], edges["r"], factor, max_distance) & zero_shift & (edges["i"] < edges["j"])
    for k, c in enumerate(configs):
        if c.pbc.any():
            continue
        sel = mask & (edges["structure"] == k)
        pairs = list(zip(edges["i"][sel].tolist(), edges["j"][sel].tolist()))
        orders = rdkit_bond_orders(c.numbers, c.positions, pairs)
        if orders:
            out.update({(k, i, j): o for (i, j), o in orders.items()})
    return out


def _plot(bonds: BondTable, folder: Path, bin_width: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted(set(bonds.label.tolist()))
    if not labels:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for lab in labels:
        d = bonds.d[bonds.label == lab]
        lo, hi = np.floor(d.min() / bin_width), np.floor(d.max() / bin_width) + 1
        ax.hist(d, bins=np.arange(lo, hi + 1) * bin_width, alpha=0.6, label=f"{lab} (n={d.size})")
    ax.set_xlabel("D = eps_ij + eps_ji (eV)")
    ax.set_ylabel("bonds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    _write_atomic(folder / "d_histograms.png", buf.getvalue())

    ncol = min(3, len(labels))
    nrow = (len(labels) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3.5 * nrow), squeeze=False)
    for ax, lab in zip(axes.flat, labels):
        m = bonds.label == lab
        d, a = bonds.d[m], bonds.a[m]
        bx = np.arange(np.floor(d.min() / bin_width), np.floor(d.max() / bin_width) + 2) * bin_width
        by = np.arange(np.floor(a.min() / bin_width), np.floor(a.max() / bin_width) + 2) * bin_width
        ax.hist2d(d, a, bins=[bx, by], cmap="viridis", cmin=1)
        ax.set_title(lab)
        ax.set_xlabel("D (eV)")
        ax.set_ylabel("A (eV)")
    for ax in list(axes.flat)[len(labels):]:
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    _write_atomic(folder / "da_maps.png", buf.getvalue())


def write_report(
    model: torch.nn.Module,
    configs: Sequence[Configuration],
    output: str | Path,
    head: str | None = None,
    method: str = "attribution",
    nodes: int = 16,
    batch_size: int = 16,
    factor: float = 1.2,
    max_distance: float = 2.2,
    bin_width: float = BIN_WIDTH,
    plots: bool = True,
) -> dict[str, Any]:
    """Compute edge energies and bonds of ``configs`` and write the report files; returns the summary."""
    folder = Path(output)
    heads, default = model_heads(model)
    head = heads[select_head(heads, head, default, key="--head")]  # one head for the whole report
    edges, per_structure = compute_edges(model, configs, head, method, nodes, batch_size)
    orders = bond_orders(configs, edges, factor, max_distance)
    bonds = bonds_from_edges(
        edges["structure"], edges["i"], edges["j"], edges["shift"], edges["Z_i"], edges["Z_j"],
        edges["r"], edges["eps"], orders, factor, max_distance,
    )
    table = summarise(bonds, bin_width)

    _write_atomic(folder / "edges.csv", _csv_text(
        ["structure", "i", "j", "Z_i", "Z_j", "r", "eps"],
        [[int(s), int(i), int(j), int(a), int(b), _fmt(r), _fmt(e)] for s, i, j, a, b, r, e in zip(
            edges["structure"], edges["i"], edges["j"], edges["Z_i"], edges["Z_j"], edges["r"], edges["eps"])],
    ))
    _write_atomic(folder / "bonds.csv", _csv_text(
        ["structure", "i", "j", "Z_i", "Z_j", "bond", "order", "r", "D", "A"],
        [[int(s), int(i), int(j), int(a), int(b), lab, int(o), _fmt(r), _fmt(d), _fmt(x)] for s, i, j, a, b, lab, o, r, d, x in zip(
            bonds.structure, bonds.i, bonds.j, bonds.z_i, bonds.z_j, bonds.label, bonds.order, bonds.r, bonds.d, bonds.a)],
    ))
    columns = ["bond", "order", "n", "r_mean", "D_mean", "D_std", "A_mean", "A_std", "H_2D", "reference"]
    source_line = f"# reference: {REFERENCE_SOURCE}; D < 0 binds, compare -D_mean with the reference\n"
    _write_atomic(folder / "bond_table.csv", source_line + _csv_text(
        columns, [[_fmt(row[k]) if row[k] is not None else "" for k in columns] for row in table]))
    md = ["| bond | n | r (A) | D mean (eV) | D std (eV) | -D mean (eV) | reference (eV) | H_2D (nats) |",
          "|---|---|---|---|---|---|---|---|"]
    for row in table:
        ref = "" if row["reference"] is None else str(row["reference"])
        md.append(f"| {row['bond']} | {row['n']} | {_f3(row['r_mean'])} | {_f3(row['D_mean'])} | {_f3(row['D_std'])} "
                  f"| {_f3(-row['D_mean'])} | {ref} | {_f3(row['H_2D'])} |")
    md.append("")
    md.append(f"Reference: {REFERENCE_SOURCE}. H_2D: Shannon entropy (natural log) of the (D, A) histogram, "
              f"{bin_width} eV bins. Bond orders: {'RDKit' if orders is not None else 'not available (RDKit not installed); by type'}.")
    _write_atomic(folder / "bond_table.md", "\n".join(md) + "\n")

    errors = [s["completeness_error"] for s in per_structure]
    summary = {
        "method": method,
        "nodes": nodes if method == "attribution" else None,
        "head": head,
        "n_structures": len(per_structure),
        "n_edges": int(edges["eps"].size),
        "n_bonds": int(bonds.d.size),
        "bond_orders": "rdkit" if orders is not None else "by type",
        "max_completeness_error": float(max(errors)) if errors else 0.0,
        "structures": per_structure,
        "bond_table": table,
    }
    _write_atomic(folder / "summary.json", json.dumps(summary, indent=1))
    if plots:
        _plot(bonds, folder, bin_width)
    return summary
