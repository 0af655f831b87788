#!/usr/bin/env python
"""Inference benchmark: mlip (eager / compiled, float32 / float64, e3nn / cueq) against mace-torch.

Systems: ``acac`` (15 atoms, data/acac/test.xyz frame 0), ``acac_box`` (64 acac molecules, 960
atoms, periodic box at liquid density), ``si512`` and ``si4096`` (periodic diamond Si).
Models: ``small`` (the acac reference architecture: 32x0e+32x1o, max_ell 3, correlation 3,
2 interactions, r_max 5), ``medium`` (the same with 128x0e+128x1o) and ``mp64`` (64x0e+64x1o with
MACE-MP-like options: density-normalised interaction blocks, ZBL pair repulsion, Agnesi distance
transform).

``--mace-modes eager compiled`` also times mace-torch compiled the way its ``MACECalculator(compile_mode=
"default")`` compiles (``mace.tools.compile.prepare(extract_model)`` then ``torch.compile``; forces by
autograd in the compiled graph, ``training=True`` as the calculator passes); its column is ``mace
compiled``. mlip's compiled rows are ``MLIPCalculator(compile=True)``.

The same weights run on both sides: for each model the mace-torch worker (run with the mace venv's
python, ``--mace-python``) builds a ``ScaleShiftMACE`` with random weights, writes its
hyper-parameters and state dict (JSON + npz, no pickle) and times mace-torch; mlip's model is
converted from those files with :func:`mlip.io.mace.convert_mace_files`, and both energies are
compared as a check. Without the mace venv, mlip models get random weights and the mace column is
left empty.

Timing: one energy+forces call on a prepared batch (the neighbour list is built once, outside the
timed region, on both sides); the median over ``--repeats`` calls after warm-up (compilation
happens in the warm-up; its duration is reported separately). Peak memory: CUDA
``max_memory_allocated``; CPU the peak resident-set growth during the timed calls (sampled).

Examples::

    python scripts/benchmark_inference.py --systems acac --models small --dtypes float64 --modes eager
    python scripts/benchmark_inference.py --device cuda --markdown docs/benchmark_table.md
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_inference_common import (  # noqa: E402  (scripts are not a package)
    MODEL_EXTRAS,
    MODELS,
    default_mace_python,
    mace_hyperparameters,
    skipped,
    time_calls,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MACE_PYTHON = default_mace_python()
SYSTEMS = ("acac", "acac_box", "si512", "si4096")


# ------------------------------------------------------------------------------------------
# systems (numpy + ase; model hyper-parameters and timing: benchmark_inference_common)
# ------------------------------------------------------------------------------------------
def build_system(name: str):
    """The benchmark structure ``name`` as an ase.Atoms (deterministic)."""
    import ase.io
    from ase.build import bulk

    if name in ("acac", "acac_box"):
        path = REPO / "data" / "acac" / "test.xyz"
        acac = ase.io.read(path, index=0)
        acac.pbc = False
        acac.cell = np.zeros((3, 3))
        if name == "acac":
            return acac
        return molecular_box(acac, per_side=4, volume_per_molecule=170.0, seed=0)
    if name == "si512":
        return bulk("Si", "diamond", a=5.43, cubic=True) * (4, 4, 4)
    if name == "si4096":
        return bulk("Si", "diamond", a=5.43, cubic=True) * (8, 8, 8)
    raise SystemExit(f"unknown system {name!r}; choose from {SYSTEMS}")


def molecular_box(molecule, per_side: int, volume_per_molecule: float, seed: int):
    """``per_side**3`` randomly rotated copies of ``molecule`` on a cubic grid in a periodic box.

    acac (100 g/mol) at 0.975 g/cm^3 occupies about 170 A^3 per molecule.
    """
    from ase import Atoms
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    count = per_side**3
    length = (count * volume_per_molecule) ** (1 / 3)
    spacing = length / per_side
    centred = molecule.positions - molecule.positions.mean(axis=0)
    positions, numbers = [], []
    for i in range(per_side):
        for j in range(per_side):
            for k in range(per_side):
                rotation = Rotation.random(random_state=rng).as_matrix()
                positions.append(centred @ rotation.T + spacing * (np.array([i, j, k]) + 0.5))
                numbers.append(molecule.numbers)
    return Atoms(numbers=np.concatenate(numbers), positions=np.concatenate(positions),
                 cell=np.eye(3) * length, pbc=True)


# ------------------------------------------------------------------------------------------
# mlip side
# ------------------------------------------------------------------------------------------
def mlip_model(hidden: str, out_dir: Path, have_mace_files: bool, extras: dict[str, Any] | None = None):
    import torch

    from mlip.io.mace import convert_mace_files

    if have_mace_files:
        return convert_mace_files(out_dir / "hyperparameters.json", out_dir / "state_dict.npz"), "converted"
    from mlip.io.mace import hparams_from_mace
    from mlip.nn.model import build_model

    torch.manual_seed(0)
    return build_model(hparams_from_mace(mace_hyperparameters(hidden, extras), {}), dtype=torch.float64), "random"


_CALCULATORS: dict[tuple, Any] = {}


def bench_mlip(model, atoms, dtype: str, mode: str, backend: str, args) -> dict[str, Any]:
    """Time one row. Calculators are reused across systems (one compilation per model/dtype/backend:
    the compiled graph has dynamic atom and edge counts)."""
    from mlip.calculator import MLIPCalculator
    from mlip.errors import MLIPError

    key = (id(model), dtype, mode, backend)
    if key not in _CALCULATORS:
        try:
            _CALCULATORS[key] = MLIPCalculator(
                model, device=args.device, dtype=dtype, compile=(mode == "compiled"), backend=backend
            )
        except MLIPError as err:
            _CALCULATORS[key] = err
    calc = _CALCULATORS[key]
    if isinstance(calc, MLIPError):
        return {"error": str(calc)}
    batch = calc.make_batch(atoms)
    periodic = bool(atoms.pbc.all())
    energy = {}

    def call() -> None:
        out = calc.evaluate(batch, compute_stress=False)
        energy["e"] = float(out["energy"][0])
        energy["f"] = out["forces"]

    timing = time_calls(call, args.repeats, args.warmup, args.device)
    forces = energy["f"].detach().cpu().double().numpy()
    if args.profile:
        profile_calls(call, args.device, f"{len(atoms)} atoms, {dtype}, {backend}, {mode}")
    return {"energy": energy["e"], "forces": forces, "edges": int(batch["edge_index"].shape[1]),
            "periodic": periodic, **timing}


def profile_calls(call, device: str, label: str, rows: int = 12) -> None:
    """Print the most expensive operators of a few calls (torch.profiler, self time)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with profile(activities=activities) as prof:
        for _ in range(3):
            call()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    print(f"# profile ({label}), 3 calls, sorted by {key}")
    print(prof.key_averages().table(sort_by=key, row_limit=rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    parser.add_argument("--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    parser.add_argument("--backends", nargs="+", default=["e3nn", "cueq"], choices=["e3nn", "cueq"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mace-python", default=DEFAULT_MACE_PYTHON, help="python of the mace-torch venv ('' to skip)")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top operators per row")
    parser.add_argument("--markdown", default=None, help="also write the table to this markdown file")
    parser.add_argument("--json", default=None, help="also write all rows as JSON")
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternate mace-torch and mlip this many times; report the fastest round of each")
    parser.add_argument("--threads", type=int, default=0, help="torch threads on both sides (0: torch's default)")
    parser.add_argument("--skip", nargs="*", default=[], metavar="SYSTEM:MODEL[:DTYPE]",
                        help="rows to leave out on both sides, e.g. si4096:medium:float64 (memory)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing (compilation happens here)")
    parser.add_argument("--mace-modes", nargs="+", default=["eager"], choices=["eager", "compiled"],
                        help="mace-torch rows: eager and/or compiled as MACECalculator(compile_mode='default')")
    parser.add_argument("--mace-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from benchmark_inference_mace import mace_worker, run_mace_worker

    if args.mace_worker:
        mace_worker(args.mace_worker)
        return 0

    import ase.io
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        systems = {name: build_system(name) for name in args.systems}
        paths = {}
        for name, atoms in systems.items():
            paths[name] = str(tmp_path / f"{name}.xyz")
            ase.io.write(paths[name], atoms, format="extxyz")
        for model_name in args.models:
            out_dir = tmp_path / model_name
            out_dir.mkdir()
            model = None
            rounds: list[list[dict[str, Any]]] = []
            for round_index in range(args.rounds):
                # mace-torch and mlip alternate round by round, so a drifting machine load hits both alike
                mace_rows = None
                if args.mace_python and Path(args.mace_python).exists():
                    mace_rows = run_mace_worker(args.mace_python, model_name, paths, args, out_dir)
                if model is None:
                    model, origin = mlip_model(MODELS[model_name], out_dir, mace_rows is not None,
                                               MODEL_EXTRAS.get(model_name))
                rounds.append(bench_model_round(model, model_name, origin, systems, mace_rows, args))
                print(f"# {model_name}: round {round_index + 1} of {args.rounds} done", flush=True)
            for row in combine_rounds(rounds):
                rows.append(row)
                print_row(row)
            _CALCULATORS.clear()
            sys.stdout.flush()
    table = markdown_table(rows, args.device)
    print()
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def bench_model_round(model, model_name: str, origin: str, systems: dict, mace_rows, args) -> list[dict[str, Any]]:
    """One pass over every (system, dtype, backend, mode) row of one model; mace-torch's numbers attached."""
    rows = []
    for name, atoms in systems.items():
        for dtype in args.dtypes:
            mace = next((r for r in mace_rows or [] if r["system"] == name and r["dtype"] == dtype
                         and r.get("mode", "eager") == "eager"), None)
            mace_c = next((r for r in mace_rows or [] if r["system"] == name and r["dtype"] == dtype
                           and r.get("mode") == "compiled" and "error" not in r), None)
            for backend in args.backends:
                for mode in args.modes:
                    base = {"system": name, "atoms": len(atoms), "model": model_name, "weights": origin,
                            "dtype": dtype, "backend": backend, "mode": mode}
                    if skipped(args.skip, name, model_name, dtype):
                        rows.append({**base, "error": "skipped (--skip)"})
                        continue
                    result = bench_mlip(model, atoms, dtype, mode, backend, args)
                    forces = result.pop("forces", None)
                    row = {**base, **result}
                    if mace_c is not None:
                        row["mace_compiled_ms"] = mace_c["ms"]
                        row["mace_compile_s"] = mace_c["warmup_s"]
                    if mace is not None and "error" not in mace:
                        row["mace_ms"] = mace["ms"]
                        row["mace_peak_mib"] = mace["peak_mib"]
                        if "energy" in result:
                            row["energy_diff"] = abs(result["energy"] - mace["energy"])
                            row["force_diff"] = float(np.abs(forces - np.array(mace["forces"])).max())
                    rows.append(row)
                    print_row(row, prefix="  ")
                    sys.stdout.flush()
    return rows


def combine_rounds(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per row: the fastest round's time on each side (min of per-round medians), the largest peak
    memory, the first round's warm-up (it holds the compilation), and every round's times."""
    combined = []
    for per_round in zip(*rounds):
        row = dict(per_round[0])
        if "error" in row:
            combined.append(row)
            continue
        row["ms_rounds"] = [r["ms"] for r in per_round]
        row["ms"] = min(row["ms_rounds"])
        row["peak_mib"] = max(r["peak_mib"] for r in per_round)
        if "mace_ms" in row:
            row["mace_ms_rounds"] = [r["mace_ms"] for r in per_round if "mace_ms" in r]
            row["mace_ms"] = min(row["mace_ms_rounds"])
            row["mace_peak_mib"] = max(r["mace_peak_mib"] for r in per_round if "mace_peak_mib" in r)
        if "mace_compiled_ms" in row:
            row["mace_compiled_ms"] = min(r["mace_compiled_ms"] for r in per_round if "mace_compiled_ms" in r)
        combined.append(row)
    return combined


def print_row(row: dict[str, Any], prefix: str = "") -> None:
    if "error" in row:
        print(f"{prefix}{row['system']:>9} {row['model']:>6} {row['dtype']} {row['backend']:>4} {row['mode']:>8}: n/a ({row['error']})")
        return
    mace = f"mace {row['mace_ms']:9.2f} ms" if "mace_ms" in row else ""
    if "mace_compiled_ms" in row:
        mace += f"  mace compiled {row['mace_compiled_ms']:9.2f} ms (compile {row['mace_compile_s']:.0f} s)"
    print(f"{prefix}{row['system']:>9} {row['model']:>6} {row['dtype']} {row['backend']:>4} {row['mode']:>8}: "
          f"{row['ms']:9.2f} ms  {row['atoms'] / row['ms'] * 1e3:10.0f} atom-steps/s  "
          f"{row['peak_mib']:8.1f} MiB  warm-up {row['warmup_s']:.1f} s  {mace}")


def markdown_table(rows: list[dict[str, Any]], device: str) -> str:
    head = ("| system | atoms | model | dtype | backend | mode | ms / call | atom-steps/s | peak MiB | "
            "mace-torch ms | mace-torch peak MiB | speed-up vs mace eager | warm-up s | dE vs mace (eV) | "
            "max dF vs mace (eV/A) | mace-torch compiled ms |")
    lines = [f"Device: {device}. ms per energy+forces call (median; with --rounds, the fastest round's median), "
             "neighbour list excluded.", "", head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        label = f"| {r['system']} | {r['atoms']} | {r['model']} | {r['dtype']} | {r['backend']} | {r['mode']} "
        if "error" in r:
            lines.append(label + f"| n/a: {r['error']} | | | | | | | | | |")
            continue
        mace = r.get("mace_ms")
        mace_ms = "" if mace is None else f"{mace:.2f}"
        mace_mib = "" if mace is None else f"{r['mace_peak_mib']:.0f}"
        speedup = "" if mace is None else f"{mace / r['ms']:.2f}x"
        diff = f"{r['energy_diff']:.1e} | {r['force_diff']:.1e}" if "energy_diff" in r else " | "
        mace_c = f"{r['mace_compiled_ms']:.2f}" if "mace_compiled_ms" in r else ""
        lines.append(
            label + f"| {r['ms']:.2f} | {r['atoms'] / r['ms'] * 1e3:.0f} | {r['peak_mib']:.0f} "
            f"| {mace_ms} | {mace_mib} | {speedup} | {r['warmup_s']:.1f} | {diff} | {mace_c} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
