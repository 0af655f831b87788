#!/usr/bin/env python
"""Training throughput (configs/s): {float64, float32} x {eager, compiled} for acac and periodic Si, against mace-torch.

One training step = forward with the training graph, forces (and, for Si, stress) by autograd kept in the
graph, the weighted MSE loss, backward (double backward through the forces), AMSGrad step. mlip runs its
own training pieces (:class:`mlip.train.loss.WeightedLoss`, and :class:`mlip.train.compiled_step.CompiledStep`
for the compiled rows, as ``train.compile: true`` does); mace-torch 0.3.16 runs its ``ScaleShiftMACE`` with
the same hyper-parameters and the same loss in its own venv (``--mace-python``). mace-torch's ``run_train``
offers no compiled training step, so its compiled rows are empty.

Model: the acac reference architecture (32x0e+32x1o, max_ell 3, correlation 3, 2 interactions, the first
plain, r_max 5, 8 Bessel, radial MLP [64,64,64], readout MLP 16x0e). Data: the bundled slices
``data/acac/train.xyz`` (15 atoms, batch 5, loss energy 1 / forces 100) and ``data/si/train.xyz``
(periodic Si, 8-64 atoms, batch 4, energy 1 / forces 10 / stress 1000). Every row is a separate process
with one thread; the first ``--warmup`` steps (compilation included, reported separately) are not timed,
then ``--epochs`` passes over ``--frames`` frames are.

    python scripts/benchmark_train_throughput.py                       # all rows, mlip and mace-torch
    python scripts/benchmark_train_throughput.py --systems acac --modes eager --mace-python ''
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_inference_common import default_mace_python  # noqa: E402  (scripts are not a package)

REPO = Path(__file__).resolve().parents[1]
SYSTEMS = {  # data file, batch size, loss weights (energy, forces, stress)
    "acac": (REPO / "data" / "acac" / "train.xyz", 5, (1.0, 100.0, 0.0)),
    "si": (REPO / "data" / "si" / "train.xyz", 4, (1.0, 10.0, 1000.0)),
}
ARCH = dict(
    r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=3, hidden_irreps="32x0e + 32x1o",
    num_interactions=2, correlation=3, radial_mlp=[64, 64, 64], mlp_irreps="16x0e",
    interaction="residual", interaction_first="plain", avg_num_neighbors=12.0,
)


def _frames(system: str, n: int) -> list:
    import ase.io

    return ase.io.read(SYSTEMS[system][0], f":{n}")


def _time(step, batches: list, warmup: int, epochs: int) -> tuple[float, float]:
    """(seconds of the ``warmup`` untimed steps, seconds per timed pass over ``batches``)."""
    t0 = time.perf_counter()
    for i in range(warmup):
        step(batches[i % len(batches)])
    t1 = time.perf_counter()
    for _ in range(epochs):
        for b in batches:
            step(b)
    return t1 - t0, (time.perf_counter() - t1) / epochs


def mlip_worker(system: str, dtype_name: str, mode: str, frames: int, warmup: int, epochs: int) -> dict:
    import torch

    from mlip.data.batch import collate
    from mlip.data.graph import configuration_to_graph
    from mlip.data.io import read_configurations
    from mlip.nn.hparams import ModelHyperparameters
    from mlip.nn.model import build_model
    from mlip.train.compiled_step import CompiledStep
    from mlip.train.loss import LossWeights, WeightedLoss

    dtype = getattr(torch, dtype_name)
    path, batch_size, (we, wf, ws) = SYSTEMS[system]
    configs = read_configurations(path, index=f":{frames}")
    zs = sorted({int(z) for c in configs for z in c.numbers})
    torch.manual_seed(0)
    hp = ModelHyperparameters(atomic_numbers=zs, atomic_energies=[[0.0] * len(zs)], **ARCH)
    model = build_model(hp, dtype=dtype)
    graphs = [configuration_to_graph(c, hp.r_max, hp.heads) for c in configs]
    batches = [collate(graphs[i:i + batch_size], dtype=dtype) for i in range(0, len(graphs), batch_size)]
    loss_fn = WeightedLoss("mse", LossWeights(energy=we, forces=wf, stress=ws))
    stress = ws > 0
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    compiled = CompiledStep(model, loss_fn, log=None) if mode == "compiled" else None

    def step(batch):
        opt.zero_grad(set_to_none=True)
        if compiled is not None:
            loss, _ = compiled(batch, compute_stress=stress)
        else:
            out = model(batch, compute_forces=True, compute_stress=stress, training=True)
            loss, _ = loss_fn(batch, out)
        loss.backward()
        opt.step()

    warm_s, pass_s = _time(step, batches, warmup, epochs)
    return {"configs_per_s": len(configs) / pass_s, "warmup_s": warm_s,
            "compiles": compiled.num_compiles if compiled is not None else 0}


def mace_worker(system: str, dtype_name: str, frames: int, warmup: int, epochs: int) -> dict:
    import numpy as np
    import torch
    from e3nn import o3
    from mace import data, modules, tools
    from mace.tools import torch_geometric

    dtype = getattr(torch, dtype_name)
    torch.set_default_dtype(dtype)
    path, batch_size, (we, wf, ws) = SYSTEMS[system]
    atoms = _frames(system, frames)
    zs = sorted({int(z) for a in atoms for z in a.numbers})
    torch.manual_seed(0)
    model = modules.ScaleShiftMACE(
        r_max=ARCH["r_max"], num_bessel=ARCH["num_bessel"], num_polynomial_cutoff=ARCH["num_polynomial_cutoff"],
        max_ell=ARCH["max_ell"], interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
        num_interactions=ARCH["num_interactions"], num_elements=len(zs), hidden_irreps=o3.Irreps(ARCH["hidden_irreps"]),
        MLP_irreps=o3.Irreps(ARCH["mlp_irreps"]), atomic_energies=np.zeros(len(zs)),
        avg_num_neighbors=ARCH["avg_num_neighbors"], atomic_numbers=zs, correlation=ARCH["correlation"],
        gate=torch.nn.functional.silu, radial_MLP=ARCH["radial_mlp"], use_reduced_cg=False,
        atomic_inter_scale=1.0, atomic_inter_shift=0.0,
    ).to(dtype)
    keys = data.KeySpecification(info_keys={"energy": "energy", "stress": "stress"}, arrays_keys={"forces": "forces"})
    z_table = tools.AtomicNumberTable(zs)
    graphs = [data.AtomicData.from_config(data.config_from_atoms(a, key_specification=keys), z_table=z_table,
                                          cutoff=ARCH["r_max"]) for a in atoms]
    loader = torch_geometric.dataloader.DataLoader(graphs, batch_size=batch_size, shuffle=False)
    batches = [b.to_dict() for b in loader]
    stress = ws > 0
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)

    def step(b):
        opt.zero_grad(set_to_none=True)
        b = dict(b)  # mace's forward writes displaced positions and cell into the dict it gets
        out = model(b, training=True, compute_force=True, compute_stress=stress)
        n = (b["ptr"][1:] - b["ptr"][:-1]).to(dtype)
        loss = we * torch.mean(((out["energy"] - b["energy"]) / n) ** 2) + wf * torch.mean((out["forces"] - b["forces"]) ** 2)
        if stress:
            loss = loss + ws * torch.mean((out["stress"] - b["stress"]) ** 2)
        loss.backward()
        opt.step()

    warm_s, pass_s = _time(step, batches, warmup, epochs)
    return {"configs_per_s": len(atoms) / pass_s, "warmup_s": warm_s, "compiles": 0}


def run_row(framework: str, system: str, dtype: str, mode: str, args: argparse.Namespace) -> dict | None:
    python = sys.executable if framework == "mlip" else args.mace_python
    cmd = [python, __file__, "--worker", framework, "--systems", system, "--dtypes", dtype, "--modes", mode,
           "--frames", str(args.frames), "--warmup", str(args.warmup), "--epochs", str(args.epochs)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if framework == "mace":  # e3nn 0.4.4 reads its constants.pt with a plain torch.load
        env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        print(f"{framework} {system} {dtype} {mode} failed:\n{res.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", nargs="+", default=["acac", "si"], choices=sorted(SYSTEMS))
    p.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
    p.add_argument("--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    p.add_argument("--frames", type=int, default=40, help="frames per timed pass")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    p.add_argument("--epochs", type=int, default=2, help="timed passes over the frames")
    p.add_argument("--mace-python", default=default_mace_python(), help="'' to skip mace-torch")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--worker", choices=["mlip", "mace"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(1)
        s, d, m = args.systems[0], args.dtypes[0], args.modes[0]
        res = (mlip_worker(s, d, m, args.frames, args.warmup, args.epochs) if args.worker == "mlip"
               else mace_worker(s, d, args.frames, args.warmup, args.epochs))
        print(json.dumps(res), flush=True)
        return 0
    rows = []
    print(f"{'system':<6} {'dtype':<8} {'mode':<9} {'mlip cfg/s':>10} {'mace cfg/s':>10} {'mlip/mace':>9} {'mlip warm-up s':>14}")
    for system in args.systems:
        for dtype in args.dtypes:
            for mode in args.modes:
                mine = run_row("mlip", system, dtype, mode, args)
                theirs = run_row("mace", system, dtype, mode, args) if args.mace_python and mode == "eager" else None
                rows.append({"system": system, "dtype": dtype, "mode": mode, "mlip": mine, "mace": theirs})
                a = mine["configs_per_s"] if mine else float("nan")
                b = theirs["configs_per_s"] if theirs else float("nan")
                warm = mine["warmup_s"] if mine else float("nan")
                print(f"{system:<6} {dtype:<8} {mode:<9} {a:>10.2f} {b:>10.2f} {a / b:>9.2f} {warm:>14.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
