#!/usr/bin/env python
"""Profile one training step of the reference acac model (configs/acac.yaml), optionally next to mace-torch.

A step = forward (training graph) + forces (first derivative, kept in the graph) + weighted MSE
(energy 1, forces 100) + backward (double backward through the forces) + AMSGrad step, float64 (``--dtype``),
batch of 5 acac frames from data/acac/train.xyz, one CPU thread.

    python scripts/profile_train_step.py                    # ms/step of mlip + torch.profiler table
    python scripts/profile_train_step.py --mace --repeats 5 # interleaved mlip / mace-torch, medians

With ``--mace`` each measurement is a separate process (mlip: this interpreter; mace-torch 0.3.16:
``--mace-python``, default the repository's .venv-mace, else /tmp/macevenv), alternated mlip, mace,
mlip, mace, .. so that slow drift of the machine load affects both alike; the medians and their ratio
are printed. Times are process CPU time per step (single thread), which a shared machine perturbs less than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_inference_common import default_mace_python  # noqa: E402  (scripts are not a package)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "acac"
HP = dict(
    r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=3, hidden_irreps="32x0e + 32x1o",
    num_interactions=2, correlation=3, radial_mlp=[64, 64, 64], mlp_irreps="16x0e",
    interaction="residual", interaction_first="plain", avg_num_neighbors=12.0,
)


def _isolated_e0s() -> dict[int, float]:
    import ase.io

    return {int(a.numbers[0]): float(a.info["energy"] if "energy" in a.info else a.get_potential_energy()) for a in ase.io.read(DATA / "isolated_atoms.xyz", ":")}


def _time_steps(step, steps: int, warmup: int) -> float:
    """Milliseconds of process CPU time per step (one thread: less sensitive to other processes than wall time)."""
    for _ in range(warmup):
        step()
    t0 = time.process_time()
    for _ in range(steps):
        step()
    return (time.process_time() - t0) / steps * 1000.0


# ------------------------------------------------------------------------------------------- mlip
def mlip_step_fn(batch_size: int, seed: int = 0, dtype: str = "float64"):
    import torch

    dt = getattr(torch, dtype)

    from mlip.data.batch import collate
    from mlip.data.graph import configuration_to_graph
    from mlip.data.io import read_configurations
    from mlip.nn.hparams import ModelHyperparameters
    from mlip.nn.model import build_model

    torch.manual_seed(seed)
    e0 = _isolated_e0s()
    zs = sorted(e0)
    hp = ModelHyperparameters(atomic_numbers=zs, atomic_energies=[[e0[z] for z in zs]], **HP)
    model = build_model(hp, dtype=dt)
    configs = read_configurations(DATA / "train.xyz", index=f":{batch_size}")
    batch = collate([configuration_to_graph(c, hp.r_max, hp.heads) for c in configs], dtype=dt)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, amsgrad=True)

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(batch, compute_forces=True, training=True)
        loss = torch.mean((out["energy"] - batch["energy"]) ** 2) + 100.0 * torch.mean(
            (out["forces"] - batch["forces"]) ** 2
        )
        loss.backward()
        opt.step()

    return step


# ------------------------------------------------------------------------------------------- mace
def mace_step_fn(batch_size: int, seed: int = 0, dtype: str = "float64"):
    import ase.io
    import numpy as np
    import torch
    from e3nn import o3
    from mace import data, modules, tools
    from mace.tools import torch_geometric

    dt = getattr(torch, dtype)
    torch.set_default_dtype(dt)
    torch.manual_seed(seed)
    e0 = _isolated_e0s()
    zs = sorted(e0)
    z_table = tools.AtomicNumberTable(zs)
    model = modules.ScaleShiftMACE(
        r_max=HP["r_max"], num_bessel=HP["num_bessel"], num_polynomial_cutoff=HP["num_polynomial_cutoff"],
        max_ell=HP["max_ell"],
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
        num_interactions=HP["num_interactions"], num_elements=len(zs), hidden_irreps=o3.Irreps(HP["hidden_irreps"]),
        MLP_irreps=o3.Irreps(HP["mlp_irreps"]), atomic_energies=np.array([e0[z] for z in zs]),
        avg_num_neighbors=HP["avg_num_neighbors"], atomic_numbers=zs, correlation=HP["correlation"],
        gate=torch.nn.functional.silu, radial_MLP=HP["radial_mlp"], use_reduced_cg=False,
        atomic_inter_scale=1.0, atomic_inter_shift=0.0,
    ).to(dt)
    atoms = ase.io.read(DATA / "train.xyz", f":{batch_size}")
    keyspec = data.KeySpecification(info_keys={"energy": "energy"}, arrays_keys={"forces": "forces"})
    configs = [data.config_from_atoms(a, key_specification=keyspec) for a in atoms]
    graphs = [data.AtomicData.from_config(c, z_table=z_table, cutoff=HP["r_max"]) for c in configs]
    batch = next(iter(torch_geometric.dataloader.DataLoader(graphs, batch_size=batch_size, shuffle=False)))
    bd = batch.to_dict()
    opt = torch.optim.Adam(model.parameters(), lr=0.01, amsgrad=True)

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(bd, training=True, compute_force=True)
        loss = torch.mean((out["energy"] - bd["energy"]) ** 2) + 100.0 * torch.mean((out["forces"] - bd["forces"]) ** 2)
        loss.backward()
        opt.step()

    return step


def worker(framework: str, steps: int, warmup: int, batch_size: int, profile: int, dtype: str = "float64") -> None:
    import torch

    torch.set_num_threads(1)
    step = (mlip_step_fn if framework == "mlip" else mace_step_fn)(batch_size, dtype=dtype)
    ms = _time_steps(step, steps, warmup)
    print(json.dumps({"framework": framework, "ms_per_step": ms}), flush=True)
    if profile:
        from torch.profiler import ProfilerActivity, profile as tprofile

        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=profile), file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=5)
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--repeats", type=int, default=3, help="interleaved measurements per framework (--mace)")
    p.add_argument("--profile", type=int, default=25, help="rows of the operator table (0: none)")
    p.add_argument("--mace", action="store_true", help="also time mace-torch, interleaved")
    p.add_argument("--mace-python", default=default_mace_python())
    p.add_argument("--worker", choices=["mlip", "mace"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.warmup, args.batch_size, args.profile, args.dtype)
        return
    if not args.mace:
        worker("mlip", args.steps, args.warmup, args.batch_size, args.profile, args.dtype)
        return
    times: dict[str, list[float]] = {"mlip": [], "mace": []}
    for r in range(args.repeats):
        for fw, py in (("mlip", sys.executable), ("mace", args.mace_python)):
            cmd = [py, __file__, "--worker", fw, "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--batch-size", str(args.batch_size), "--profile", "0", "--dtype", args.dtype]
            env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
            if fw == "mace":  # e3nn 0.4.4 reads its own constants.pt with a plain torch.load (torch >= 2.6 default changed)
                env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if res.returncode != 0:
                raise SystemExit(f"{fw} worker failed:\n{res.stderr[-3000:]}")
            ms = json.loads(res.stdout.strip().splitlines()[-1])["ms_per_step"]
            times[fw].append(ms)
            print(f"repeat {r + 1}: {fw:5s} {ms:8.1f} ms/step", flush=True)
    med = {fw: statistics.median(v) for fw, v in times.items()}
    print(f"median ms/step: mlip {med['mlip']:.1f}, mace-torch {med['mace']:.1f}, ratio mlip/mace {med['mlip'] / med['mace']:.3f}")


if __name__ == "__main__":
    main()
