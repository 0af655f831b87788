"""Helpers of the mace ``.model`` tests: decompress fixtures, compare a model with a folder's outputs.npz."""

from __future__ import annotations

import lzma
import sys
from pathlib import Path

import ase.io
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nn"))

from graphs import atoms_structures, make_batch

HERE = Path(__file__).resolve().parent
OLD_FIXTURES = HERE.parents[0] / "fixtures" / "mace"
SHARED_MACE = HERE.parents[1].parent / "shared" / "reference" / "mace"  # ../shared beside the clone
SHARED_VARIANTS = ["off_residual", "mp_density_zbl_agnesi", "mh_nonlinear_two_heads"]
EPS32 = float(np.finfo(np.float32).eps)


def decompress(xz: Path, out_dir: Path) -> Path:
    """``FILE.model.xz`` -> ``out_dir/FILE.model`` (what a user has after ``xz -d``)."""
    out = out_dir / xz.name[: -len(".xz")]
    out.write_bytes(lzma.decompress(xz.read_bytes()))
    return out


def max_diffs(model: torch.nn.Module, folder: Path) -> dict[tuple[str, str], tuple[float, float]]:
    """{(head, property): (max |model - reference|, max |reference|)} over the folder's structures.

    Properties: ``energy`` (eV), ``forces`` (eV/A), ``node_energy`` (eV), ``stress`` (eV/A^3)."""
    atoms = ase.io.read(folder / "structures.xyz", ":")
    ref = np.load(folder / "outputs.npz")
    dtype = next(model.parameters()).dtype
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for h, head in enumerate(model.heads):
        batch = make_batch(atoms_structures(atoms), model.r_max, heads=[h] * len(atoms), dtype=dtype)
        res = model(batch, compute_forces=True, compute_stress=True)
        ptr = batch["ptr"].numpy()
        got = {k: res[k].detach().double().numpy() for k in ("energy", "forces", "node_energy", "stress")}
        pairs = {"energy": [(got["energy"], ref[f"{head}/energy"])], "stress": [(got["stress"], ref[f"{head}/stress"])]}
        for key in ("forces", "node_energy"):
            pairs[key] = [(got[key][ptr[i]: ptr[i + 1]], ref[f"{head}/{key}/{i}"]) for i in range(len(atoms))]
        for key, items in pairs.items():
            diff = max(float(np.abs(a - b).max()) for a, b in items)
            scale = max(float(np.abs(b).max()) for _, b in items)
            out[(head, key)] = (diff, scale)
    return out


def assert_float64_parity(diffs: dict, tol: float = 1e-8) -> None:
    """Every property of every head within ``tol`` (absolute)."""
    bad = {k: d for k, (d, _) in diffs.items() if not d < tol}
    assert not bad, bad


def assert_float32_parity(diffs: dict, ulps: float = 16.0) -> None:
    """float32 rounding: every difference below ``ulps`` float32 epsilons of the property's largest value."""
    bad = {k: (d, s) for k, (d, s) in diffs.items() if not d <= ulps * EPS32 * max(s, 1.0)}
    assert not bad, bad
