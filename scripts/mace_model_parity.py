"""Parity table of mace-torch ``.model`` files read by mlip's safe reader (no mace-torch needed).

    OMP_NUM_THREADS=1 python scripts/mace_model_parity.py [../shared/reference/mace] [tests/fixtures/mace]

For every folder holding ``model*.model.xz`` + ``structures.xyz`` + ``outputs.npz``: decompress into a
temporary folder, convert with :func:`mlip.io.mace.convert_mace_model_file` (the file's dtype; float32
files also evaluated in float64), evaluate with mlip's own neighbour lists and collate, and print the
largest absolute difference to ``outputs.npz`` per head and property (energy eV, forces eV/A, node
energy eV, stress eV/A^3).
"""

from __future__ import annotations

import lzma
import sys
import tempfile
from pathlib import Path

import ase.io
import numpy as np
import torch

from mlip.data.batch import collate
from mlip.data.configuration import Configuration
from mlip.data.graph import configuration_to_graph
from mlip.io.mace import convert_mace_model_file


def _diffs(model: torch.nn.Module, folder: Path) -> dict[str, float]:
    atoms = ase.io.read(folder / "structures.xyz", ":")
    ref = np.load(folder / "outputs.npz")
    dtype = next(model.parameters()).dtype
    out: dict[str, float] = {}
    for h, head in enumerate(model.heads):
        graphs = []
        for a in atoms:
            cfg = Configuration(numbers=a.numbers, positions=a.positions,
                                cell=np.array(a.cell[:]) if a.pbc.any() else np.zeros((3, 3)), pbc=a.pbc, head=head)
            graphs.append(configuration_to_graph(cfg, model.r_max, model.heads))
        batch = collate(graphs, dtype)
        res = model(batch, compute_forces=True, compute_stress=True)
        ptr = np.concatenate([[0], np.cumsum([len(a) for a in atoms])])
        get = {k: res[k].detach().double().numpy() for k in ("energy", "forces", "node_energy", "stress")}
        out[f"{head}/energy"] = float(np.abs(get["energy"] - ref[f"{head}/energy"]).max())
        out[f"{head}/stress"] = float(np.abs(get["stress"] - ref[f"{head}/stress"]).max())
        for key in ("forces", "node_energy"):
            out[f"{head}/{key}"] = max(float(np.abs(get[key][ptr[i]: ptr[i + 1]] - ref[f"{head}/{key}/{i}"]).max())
                                       for i in range(len(atoms)))
    return out


def main(roots: list[str]) -> None:
    print("| folder | file | dtype | head | energy | forces | node energy | stress |")
    print("|---|---|---|---|---|---|---|---|")
    for root in roots:
        for xz in sorted(Path(root).glob("*/*.model.xz")):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / xz.name[:-3]
                path.write_bytes(lzma.decompress(xz.read_bytes()))
                model = convert_mace_model_file(path)
                runs = [model] + ([convert_mace_model_file(path, dtype=torch.float64)]
                                  if next(model.parameters()).dtype == torch.float32 else [])
                for m in runs:
                    d = _diffs(m, xz.parent)
                    for head in m.heads:
                        cells = " | ".join(f"{d[f'{head}/{k}']:.1e}" for k in ("energy", "forces", "node_energy", "stress"))
                        print(f"| {xz.parent.name} | {xz.name[:-3]} | {str(next(m.parameters()).dtype)[6:]} | {head} | {cells} |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["../shared/reference/mace", "tests/fixtures/mace"])
