"""How much float32 loses on total energies: label rounding and model evaluation, acac and Si.

Prints a table (docs/model.md, "Precision") of per-atom energy errors of a float32 evaluation against a
float64 evaluation of the *same* weights, on real frames of ../shared/data (or files given on the
command line), with E0s, shift and scale from the data as in training:

* ``label``: rounding the reference energy to float32, ``|fl32(E) - E| / N``;
* ``model``: ``|E_32 - E_64| / N`` of one model (random weights, seed 0, the tiny test architecture);
* ``forces``: max ``|F_32 - F_64|`` over components, relative to the largest force component.

Usage: ``python scripts/float32_error.py [--frames 200]``. Takes a minute on one CPU core.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from mlip.data.batch import collate
from mlip.data.graph import configuration_to_graph
from mlip.data.io import read_configurations
from mlip.nn.hparams import ModelHyperparameters
from mlip.nn.model import build_model
from mlip.train import statistics

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TINY = dict(hidden_irreps="8x0e + 8x1o", max_ell=2, correlation=2, num_interactions=2, r_max=5.0,
            num_bessel=8, radial_mlp=[16], mlp_irreps="8x0e")


def _model(configs: list, isolated: list, e0_spec: str | dict) -> torch.nn.Module:
    zs = sorted({int(z) for c in configs for z in c.numbers})
    e0 = statistics.atomic_energies(e0_spec, configs, isolated, zs)
    scale, shift = statistics.scale_shift(configs, e0, "rms_forces")
    hp = ModelHyperparameters(atomic_numbers=zs, heads=["Default"], atomic_energies=[[float(e0[z]) for z in zs]],
                              scale=[scale], shift=[shift], avg_num_neighbors=statistics.avg_num_neighbors(
                                  configs, TINY["r_max"]), **TINY)
    torch.manual_seed(0)
    return build_model(hp, dtype=torch.float64)


def measure(name: str, configs: list, isolated: list, e0_spec: str | dict) -> str:
    """One table row: rms/max per-atom energy errors (meV/atom) and relative force error."""
    model = _model(configs, isolated, e0_spec)
    n = np.array([c.n_atoms for c in configs], dtype=np.float64)
    ref = np.array([c.energy for c in configs], dtype=np.float64)
    label = np.abs(ref.astype(np.float32).astype(np.float64) - ref) / n
    graphs = [configuration_to_graph(c, model.r_max, ["Default"]) for c in configs]
    out = {}
    for dtype in (torch.float64, torch.float32):
        model.to(dtype)
        es, fs = [], []
        for i in range(0, len(graphs), 16):
            res = model(collate(graphs[i: i + 16], dtype=dtype), compute_forces=True)
            es.append(res["energy"].detach().double())
            fs.append(res["forces"].detach().double())
        out[dtype] = torch.cat(es).numpy(), torch.cat(fs).numpy()
    e_err = np.abs(out[torch.float32][0] - out[torch.float64][0]) / n
    f64 = out[torch.float64][1]
    f_err = np.abs(out[torch.float32][1] - f64).max() / np.abs(f64).max()
    mean_e = float(np.mean(np.abs(ref)))
    return (f"| {name} | {len(configs)} | {int(n.min())}-{int(n.max())} | {mean_e:.1f} | "
            f"{1e3 * np.sqrt(np.mean(label ** 2)):.2g} / {1e3 * label.max():.2g} | "
            f"{1e3 * np.sqrt(np.mean(e_err ** 2)):.2g} / {1e3 * e_err.max():.2g} | {f_err:.1e} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=200, help="frames per data set")
    p.add_argument("--acac", default=str(SHARED / "acac" / "test_MD_300K.xyz"))
    p.add_argument("--acac-isolated", default=str(SHARED / "acac" / "isolated_atoms.xyz"))
    p.add_argument("--si", default=str(SHARED / "si" / "train.xyz"))
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"float32 eps = {torch.finfo(torch.float32).eps:.3g}; errors in meV/atom (rms / max), "
          f"forces: max |F32 - F64| / max |F64|")
    print("| data | frames | atoms | mean abs E (eV) | label rounding | model E32 - E64 | forces |")
    print("|---|---|---|---|---|---|---|")
    acac = read_configurations(args.acac, index=f":{args.frames}")
    iso = read_configurations(args.acac_isolated)
    print(measure("acac test_MD_300K", acac, iso, "isolated"))
    si = read_configurations(args.si, index=f":{args.frames}")
    print(measure("Si (mlearn) train", si, [], "average"))


if __name__ == "__main__":
    main()
