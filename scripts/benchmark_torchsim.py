#!/usr/bin/env python
"""MD throughput of one mlip model through each engine route, in atom-steps per second.

Routes (same model, same structures, NVE velocity Verlet, 1 fs, velocities from 300 K):

* ``ase``            -- :class:`mlip.calculator.MLIPCalculator` + ASE ``VelocityVerlet``, one system at a time;
* ``lammps``         -- LAMMPS ``fix nve`` with the ``fix external`` coupling (:mod:`mlip.integrations.lammps`), one at a time;
* ``torchsim-1by1``  -- torch-sim ``nve`` with :class:`mlip.integrations.torchsim.MLIPTorchSimModel`, one at a time;
* ``torchsim-batch`` -- the same, all systems in one batched state.

Structures: ``--systems`` copies of a rattled diamond-Si supercell (``--repeat``, 8 atoms per
cubic cell) with every eighth atom Mo. Model: random weights, the ``small`` architecture of
scripts/benchmark_inference.py (32x0e+32x1o, max_ell 3, correlation 3, 2 interactions, r_max 5)
unless ``--model`` gives a model file. Each route runs ``--warmup`` steps untimed, then ``--steps``
timed; atom-steps/s = systems x atoms x steps / wall time, fastest of ``--rounds`` alternating
rounds. Prints a markdown table with commit,
machine, date and the load average (the machine may be shared).

    python scripts/benchmark_torchsim.py --systems 8 --repeat 2 --steps 10
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def build_model(seed: int = 0) -> torch.nn.Module:
    from mlip.nn.hparams import ModelHyperparameters
    from mlip.nn.model import build_model as build

    hparams = ModelHyperparameters(
        atomic_numbers=[14, 42], heads=["Default"], atomic_energies=[[-1.5, -2.25]], scale=[1.0], shift=[0.0],
        avg_num_neighbors=16.0, r_max=5.0, num_bessel=8, max_ell=3, hidden_irreps="32x0e + 32x1o",
        num_interactions=2, correlation=3, radial_mlp=[64, 64], mlp_irreps="16x0e", pair_repulsion=True,
    )
    torch.manual_seed(seed)
    return build(hparams, dtype=torch.float64)


def build_systems(count: int, repeat: int) -> list:
    from ase.build import bulk

    systems = []
    for k in range(count):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True) * (repeat, repeat, repeat)
        atoms.numbers[::8] = 42
        atoms.rattle(0.05, seed=k)
        systems.append(atoms)
    return systems


def _velocities(atoms, seed: int) -> None:
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(seed))
    Stationary(atoms)


def run_ase(model, systems, steps: int, warmup: int, dtype: str) -> float:
    from ase.md.verlet import VelocityVerlet
    from ase.units import fs

    from mlip.calculator import MLIPCalculator

    total = 0.0
    for k, atoms in enumerate(systems):
        atoms = atoms.copy()
        atoms.calc = MLIPCalculator(model, dtype=dtype)
        _velocities(atoms, k)
        dyn = VelocityVerlet(atoms, timestep=1.0 * fs)
        dyn.run(warmup)
        start = time.perf_counter()
        dyn.run(steps)
        total += time.perf_counter() - start
    return total


def run_lammps(model, systems, steps: int, warmup: int, dtype: str) -> float:
    from mlip.integrations.lammps import attach, import_lammps

    lammps = import_lammps()
    total = 0.0
    for k, atoms in enumerate(systems):
        lmp = lammps.lammps(cmdargs=["-nocite", "-log", "none", "-screen", "none"])
        a, b, c = atoms.cell.array
        lines = ["units metal", "atom_style atomic", "boundary p p p",
                 f"region box prism 0 {a[0]} 0 {b[1]} 0 {c[2]} {b[0]} {c[0]} {c[1]}", "create_box 2 box"]
        lines += [f"create_atoms {1 if z == 14 else 2} single {x} {y} {w} remap yes"
                  for z, (x, y, w) in zip(atoms.numbers, atoms.positions)]
        lines += ["mass 1 28.085", "mass 2 95.95", f"velocity all create 300 {1000 + k} mom yes rot no",
                  "timestep 0.001", "fix nve all nve", "fix mlip all external pf/callback 1 1", "thermo 1000"]
        lmp.commands_string("\n".join(lines) + "\n")
        coupling = attach(lmp, model, ["Si", "Mo"], dtype=dtype)
        lmp.command(f"run {warmup}")
        start = time.perf_counter()
        lmp.command(f"run {steps}")
        total += time.perf_counter() - start
        assert coupling.calls >= steps
        lmp.close()
    return total


def run_torchsim(model, systems, steps: int, warmup: int, dtype: str, batched: bool) -> float:
    import torch_sim as ts

    from mlip.integrations.torchsim import MLIPTorchSimModel

    ts_model = MLIPTorchSimModel(model, dtype=dtype, compute_stress=False)
    groups = [systems] if batched else [[atoms] for atoms in systems]
    total = 0.0
    for group in groups:
        state = ts.io.atoms_to_state(group, ts_model.device, ts_model.dtype)
        state = ts.integrate(state, ts_model, integrator=ts.nve, n_steps=warmup, timestep=0.001, temperature=300)
        start = time.perf_counter()
        ts.integrate(state, ts_model, integrator=ts.nve, n_steps=steps, timestep=0.001, temperature=300)
        total += time.perf_counter() - start
    return total


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--systems", type=int, default=8)
    p.add_argument("--repeat", type=int, default=2, help="cubic diamond cells per direction (8 atoms each)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="alternate the routes this many times; report the fastest")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--model", default=None, help="mlip model file with Si and Mo (default: random small model)")
    p.add_argument("--routes", nargs="+", default=["ase", "lammps", "torchsim-1by1", "torchsim-batch"])
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = args.model or build_model()
    systems = build_systems(args.systems, args.repeat)
    atom_steps = sum(len(a) for a in systems) * args.steps
    best: dict[str, float] = {}
    for round_ in range(args.rounds):  # routes alternate; the fastest round of each counts (shared machine)
        for route in args.routes:
            if route == "ase":
                seconds = run_ase(model, systems, args.steps, args.warmup, args.dtype)
            elif route == "lammps":
                seconds = run_lammps(model, systems, args.steps, args.warmup, args.dtype)
            else:
                seconds = run_torchsim(model, systems, args.steps, args.warmup, args.dtype,
                                       batched=route == "torchsim-batch")
            best[route] = min(seconds, best.get(route, float("inf")))
            print(f"round {round_}: {route}: {seconds:.2f} s, {atom_steps / seconds:.1f} atom-steps/s", flush=True)
    rows = [(route, best[route], atom_steps / best[route]) for route in args.routes]
    base = dict((r, v) for r, _, v in rows).get("ase")
    print(f"\ncommit {_commit()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}, "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {args.dtype}, CPU")
    print(f"{args.systems} systems x {len(systems[0])} atoms, {args.steps} timed steps (+{args.warmup} warm-up), "
          f"fastest of {args.rounds} round(s)\n")
    print("| route | wall s | atom-steps/s | vs ASE |\n|---|---|---|---|")
    for route, seconds, rate in rows:
        ratio = f"{rate / base:.2f}x" if base else "-"
        print(f"| {route} | {seconds:.2f} | {rate:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
