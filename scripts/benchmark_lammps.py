"""LAMMPS (``fix external``, 1 and 2 MPI ranks) against the ASE calculator: atom-steps per second of NVE MD.

    python scripts/benchmark_lammps.py [--sizes 6 10] [--dtype float32] [--steps 3]

For each Si diamond cell of ``8 n^3`` atoms (n = 6: 1,728; n = 10: 8,000; n = 20: 64,000) and the 64-channel
MACE-MP-like model of scripts/benchmark_inference.py (``mp64``: 64x0e+64x1o, r_max 5, 2 density-normalised
interactions, ZBL, Agnesi; random weights), one after the other, each alone on the machine:

* ``ase``: :class:`mlip.calculator.MLIPCalculator` under ASE's VelocityVerlet, one thread;
* ``lammps-1``: ``mlip.integrations.lammps.attach`` in LAMMPS on one rank, ``fix nve``, one thread;
* ``lammps-2``: the same under ``mpiexec -n 2``, one thread per rank.

Positions are rattled by 0.02 A, velocities drawn at 300 K; one warm-up step, then ``--steps`` timed steps
(wall clock of ``run``/``dyn.run``; the first LAMMPS ``run`` pays the set-up call, the timed one reuses it).
Prints a markdown table: atom-steps/s, and the ratios LAMMPS-1/ASE and LAMMPS-2/LAMMPS-1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchmark_inference_common import MODEL_EXTRAS, MODELS, mace_hyperparameters  # noqa: E402

LATTICE = 5.43


def build_model(path: Path) -> None:
    """The mp64 model with seeded random weights, saved as an mlip model file."""
    import torch

    from mlip.io.mace import hparams_from_mace
    from mlip.io.model_file import save_model
    from mlip.nn.model import build_model as build

    torch.manual_seed(0)
    save_model(build(hparams_from_mace(mace_hyperparameters(MODELS["mp64"], MODEL_EXTRAS["mp64"]), {}),
                     dtype=torch.float64), path)


def run_ase(model: Path, n: int, dtype: str, steps: int) -> float:
    """Seconds per VelocityVerlet step of the ASE calculator."""
    import numpy as np
    from ase.build import bulk
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet
    from ase.units import fs

    from mlip.calculator import MLIPCalculator

    atoms = bulk("Si", "diamond", a=LATTICE, cubic=True).repeat((n, n, n))
    atoms.rattle(0.02, seed=1)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(2))
    atoms.calc = MLIPCalculator(str(model), dtype=dtype)
    dyn = VelocityVerlet(atoms, timestep=1.0 * fs)
    dyn.run(1)
    start = time.perf_counter()
    dyn.run(steps)
    return (time.perf_counter() - start) / steps


def run_lammps(model: Path, n: int, dtype: str, steps: int) -> float:
    """Seconds per ``fix nve`` step in LAMMPS on this process's ranks (called on every rank)."""
    from mlip.integrations.lammps import attach, import_lammps

    lmp = import_lammps().lammps(cmdargs=["-nocite", "-log", "none", "-screen", "none"])
    lmp.commands_string(
        f"units metal\natom_style atomic\nlattice diamond {LATTICE}\nregion box block 0 {n} 0 {n} 0 {n}\n"
        "create_box 1 box\ncreate_atoms 1 box\nmass 1 28.085\ndisplace_atoms all random 0.02 0.02 0.02 1\n"
        "velocity all create 300 2 loop geom\ntimestep 0.001\nfix nve all nve\n"
        "fix mlip all external pf/callback 1 1\n"
    )
    attach(lmp, str(model), ["Si"], dtype=dtype)
    lmp.command("run 1")
    start = time.perf_counter()
    lmp.command(f"run {steps}")
    elapsed = time.perf_counter() - start
    lmp.close()
    return elapsed / steps


def measure(kind: str, model: Path, n: int, dtype: str, steps: int) -> float:
    """One measurement in a fresh process (``mpiexec -n 2`` for lammps-2), one thread per process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    worker = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--model", str(model),
              "--sizes", str(n), "--dtype", dtype, "--steps", str(steps)]
    if kind.startswith("lammps"):
        ranks = kind.split("-")[1]
        worker = [str(Path(sys.executable).parent / "mpiexec"), "-n", ranks, *worker]
    result = subprocess.run(worker, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{kind} n={n} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][0])["seconds_per_step"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[6, 10], help="cells per side (8 n^3 atoms) [6 10]")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--steps", type=int, default=3, help="timed MD steps per measurement [3]")
    parser.add_argument("--kinds", nargs="+", default=["ase", "lammps-1", "lammps-2"])
    parser.add_argument("--model", type=Path, help="(worker) model file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        run = run_ase if args.worker == "ase" else run_lammps
        seconds = run(args.model, args.sizes[0], args.dtype, args.steps)
        if args.worker == "ase" or int(os.environ.get("PMI_RANK", "0")) == 0:
            print(json.dumps({"seconds_per_step": seconds}), flush=True)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        model = Path(folder) / "mp64.pt"
        build_model(model)
        print(f"| atoms | dtype | {' | '.join(f'{k} (atom-steps/s)' for k in args.kinds)} | lammps-1 / ase | "
              "lammps-2 / lammps-1 |")
        print("|" + "---|" * (len(args.kinds) + 4))
        for n in args.sizes:
            atoms = 8 * n**3
            rate = {kind: atoms / measure(kind, model, n, args.dtype, args.steps) for kind in args.kinds}
            one = rate.get("lammps-1", float("nan"))
            print(f"| {atoms} | {args.dtype} | {' | '.join(f'{rate[k]:.1f}' for k in args.kinds)} | "
                  f"{one / rate.get('ase', float('nan')):.3f} | {rate.get('lammps-2', float('nan')) / one:.3f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
