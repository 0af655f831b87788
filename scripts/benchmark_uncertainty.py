#!/usr/bin/env python
"""Cost of predictions with uncertainty against a plain energy+forces call (docs/benchmarks.md).

Per system, the median wall time of one ``MLIPCalculator.calculate`` (energy, forces, and stress for
periodic cells) over ``--repeats`` calls after two warm-up calls, for

* ``plain``: the eager forward + forces (no uncertainty);
* ``llpr``: the same plus ``energy_uncertainty``, ``forces_uncertainty`` (exact: P vector-Jacobian
  products batched with vmap) and ``stress_uncertainty`` (periodic);
* ``llpr K``: force/stress variances estimated from ``--samples`` K random directions (``LLPR.force_samples``);
* ``committee``: a committee of ``--members`` models (mean and spread).

Model: the acac reference architecture (32x0e+32x1o, max_ell 3, correlation 3, 2 interactions,
r_max 5, MLP readout 16x0e; P = 48 last-layer features), random weights (cost does not depend on them),
elements H C O Si; LLPR state with a random ``H0`` (the cost does not depend on it either).
Systems: ``acac`` (15 atoms, first frame of data/acac/test.xyz), ``si64`` (periodic diamond Si 2x2x2).

Example::

    OMP_NUM_THREADS=1 python scripts/benchmark_uncertainty.py --threads 1 --repeats 10
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def build(seed: int, dtype: torch.dtype):
    from mlip.nn.hparams import ModelHyperparameters
    from mlip.nn.model import build_model

    hp = ModelHyperparameters(
        atomic_numbers=[1, 6, 8, 14], r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=3,
        hidden_irreps="32x0e + 32x1o", num_interactions=2, correlation=3, radial_mlp=[64, 64, 64],
        mlp_irreps="16x0e", avg_num_neighbors=10.0, interaction="residual", interaction_first="plain",
    )
    torch.manual_seed(seed)
    return build_model(hp, dtype=dtype).eval()


def systems() -> dict:
    import ase.io
    from ase.build import bulk

    acac = ase.io.read(ROOT / "data" / "acac" / "test.xyz", "0")
    acac.calc = None
    si = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 2))
    si.rattle(0.05, seed=1)
    return {"acac": acac, "si64": si}


def time_calls(calcs: list, atoms, repeats: int) -> list[float]:
    """Median ms of ``calc.calculate`` per calculator (all properties, no ASE caching: positions jittered each
    call). The calculators take turns call by call, so a change of machine load hits all of them alike."""
    from ase.calculators.calculator import all_changes

    props = ["energy", "forces"] + (["stress"] if atoms.pbc.all() else [])
    rng = np.random.default_rng(0)
    base = atoms.positions.copy()
    times: list[list[float]] = [[] for _ in calcs]
    for k in range(repeats + 2):
        atoms.positions = base + 1e-4 * rng.normal(size=base.shape)
        for calc, row in zip(calcs, times):
            start = time.perf_counter()
            calc.calculate(atoms.copy(), props, all_changes)
            if k >= 2:
                row.append(1e3 * (time.perf_counter() - start))
    return [statistics.median(row) for row in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--vjp", choices=["auto", "batched", "loop"], default="auto",
                        help="LLPR backward passes: auto (loop on CPU, vmap on CUDA), batched (vmap) or loop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from mlip.uncertainty import predict

    predict.BATCHED_VJP = {"auto": None, "batched": True, "loop": False}[args.vjp]
    from mlip.calculator import MLIPCalculator
    from mlip.uncertainty import LLPR, Committee, HeadLLPR, feature_dim, readout_weights

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()
    print(f"commit {commit}, {platform.node()}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s), median of {args.repeats} interleaved calls, VJPs {args.vjp}")
    k, m = args.samples, args.members
    print(f"| system | atoms | dtype | plain ms | LLPR exact ms (x plain) | LLPR K={k} ms (x plain) | committee-{m} ms (x plain) |")
    print("|---|---|---|---|---|---|---|")
    for dtype_name in args.dtypes.split(","):
        members = [build(seed, torch.float64) for seed in range(args.members)]
        model = members[0]
        p = feature_dim(model)
        a = torch.randn(4 * p, p, dtype=torch.float64)
        heads = {"Default": HeadLLPR(a.T @ a, readout_weights(model)[0], 4 * p, alpha2=1.0, reg=1.0)}
        llpr, sampled = LLPR(heads), LLPR(heads, force_samples=args.samples)
        for name, atoms in systems().items():
            plain = MLIPCalculator(model, dtype=dtype_name)
            with_llpr = MLIPCalculator(model, dtype=dtype_name, uncertainty=llpr)
            with_samples = MLIPCalculator(model, dtype=dtype_name, uncertainty=sampled)
            committee = MLIPCalculator(model, dtype=dtype_name, uncertainty=Committee(members))
            t0, t1, t2, t3 = time_calls([plain, with_llpr, with_samples, committee], atoms, args.repeats)
            print(f"| {name} | {len(atoms)} | {dtype_name} | {t0:.1f} | {t1:.0f} ({t1 / t0:.1f}x) | {t2:.0f} ({t2 / t0:.1f}x) "
                  f"| {t3:.0f} ({t3 / t0:.1f}x) |", flush=True)


if __name__ == "__main__":
    main()
