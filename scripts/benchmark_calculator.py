#!/usr/bin/env python
"""Calculator-level benchmark (issue 24): mace-torch's ``MACECalculator`` against mlip's ``MLIPCalculator``.

The two frameworks as users call them, through ASE::

    MACECalculator(model_paths="mp64.model", default_dtype=D, compile_mode="default" | None, device="cpu")
    MLIPCalculator(model="mp64-mlip.pt", dtype=D, compile=True | False)

Every measurement (framework x dtype x mode x system) runs in a fresh process
(scripts/benchmark_calculator_worker.py), one after the other, with ``OMP_NUM_THREADS=1`` and
``torch.set_num_threads(1)``; by default each gets an empty inductor cache (``--inductor-cache fresh``), so
the compile seconds are those of a first compilation.

Model ``mp64`` (the issue's settings): r_max 5, 10 Bessel functions, polynomial cutoff 5, max_ell 3,
correlation 3, 2 interactions (``RealAgnosticDensityInteractionBlock`` then
``RealAgnosticDensityResidualInteractionBlock``), hidden 64x0e+64x1o, MLP 16x0e, radial MLP [64, 64, 64],
avg_num_neighbors 30, ZBL pair repulsion, Agnesi transform, atomic_inter_scale 0.8, elements H C O Si.
mace-torch builds it with random perturbed weights and saves it with ``torch.save`` (the ``.model`` file)
and as JSON + npz; mlip converts the JSON + npz (:func:`mlip.io.mace.convert_mace_files`) and saves its own
model file. Without mace-torch (``--mace-python ''``) mlip gets random weights and the mace-torch columns are empty.

Sections (one or more; the speed table when none is named):

* ``--speed``: systems Si 512 (4x4x4 cubic diamond cells, a = 5.43 A) and acac (data/acac/test.xyz frame 0,
  non-periodic). Before every call the positions are the starting ones plus N(0, 0.02 A) noise, drawn
  from ``numpy.random.default_rng(--seed)`` in the same sequence on both sides. Median of ``--repeats``
  (5) ``atoms.get_potential_energy(); atoms.get_forces()`` calls after ``--warmup`` (2) calls; the
  warm-up seconds (compilation included) are reported. Both sides' energies and forces of the last call
  (the same positions) are compared. Each side does what its calculator does by default: mace-torch builds
  its neighbour list every call and computes the stress; mlip reuses a skin neighbour list and computes
  the stress of periodic cells. mace-torch's worker sets torch's default dtype to D first: its compile_mode
  rebuilds the model in the default dtype, so ``default_dtype="float64"`` alone would compile a float32
  model; each worker reports the dtype its model computes in, and a mismatch is printed as a WARNING.
* ``--memory``: peak RSS (``ru_maxrss``, the whole process) of one eager energy+forces call in a fresh
  process on Si ``8 n^3`` (``--memory-cells`` n, default 8: 4096 atoms), float32 and float64, both
  frameworks; the RSS before the call is printed too. The median of ``--memory-repeats`` (3) fresh
  processes, with the range: one process's peak can vary from run to run (the allocator's heap).
* ``--largest``: peak RSS at ``--largest-cells`` (4 6 8) as in ``--memory``; a straight line
  RSS = a + b * atoms per framework and dtype, and the largest n x n x n Si cell predicted to fit in
  ``--budget-gib`` (16 GiB). A size whose predicted RSS exceeds ``--max-rss-gib`` (20) is not measured.
* ``--md-overhead``: mlip's calculator in ASE ``VelocityVerlet`` (1 fs); per step the wall time of
  ``dyn.run(--md-steps)`` and the time inside ``MLIPCalculator.evaluate``; the share outside it (issue
  target: at most 5 %).

Examples::

    python scripts/benchmark_calculator.py --speed --markdown speed.md
    python scripts/benchmark_calculator.py --systems acac --modes eager --repeats 1 --warmup 1
    python scripts/benchmark_calculator.py --memory --largest --md-overhead --mace-python ''
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_inference_common import (  # noqa: E402  (scripts are not a package)
    MODEL_EXTRAS,
    MODELS,
    cpu_model,
    default_mace_python,
    mace_hyperparameters,
)

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("benchmark_calculator_worker.py")
FRAMEWORKS = ("mace", "mlip")
LABEL = {"mace": "mace-torch", "mlip": "mlip"}
MP64 = {**MODEL_EXTRAS["mp64"], "num_bessel": 10, "num_polynomial_cutoff": 5, "avg_num_neighbors": 30.0,
        "atomic_inter_scale": 0.8}
"""The issue's mp64 settings (on top of benchmark_inference_common's base and mp64 extras)."""
GIB = 2**30


# ------------------------------------------------------------------------------------------
# pure parts: fit, extrapolation, tables
# ------------------------------------------------------------------------------------------
def si_atoms(n: int) -> int:
    return 8 * n**3


def linear_fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares ``y = a + b x`` through ``(x, y)`` points (two or more distinct x)."""
    if len({x for x, _ in points}) < 2:
        raise ValueError("a line needs two or more distinct sizes")
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return my - b * mx, b


def largest_cell(a: float, b: float, budget: float) -> int:
    """Largest n with ``a + b * 8 n^3 <= budget`` (0 when not even n = 1 fits; b must be > 0)."""
    if b <= 0:
        raise ValueError("memory does not grow with the size: no extrapolation")
    n = max(int(((budget - a) / (8 * b)) ** (1 / 3)) if budget > a else 0, 0) + 1
    while n > 0 and a + b * si_atoms(n) > budget:  # the float cube root, corrected exactly
        n -= 1
    return n


def predicted_rss(measured: list[tuple[int, float]], atoms: int) -> float:
    """RSS (MiB) predicted at ``atoms`` from the sizes measured so far: the fitted line with two or more,
    the one point scaled in proportion with one (an upper bound when memory = a + b atoms, a > 0)."""
    if len(measured) >= 2:
        a, b = linear_fit([(float(x), y) for x, y in measured])
        return a + b * atoms
    x, y = measured[0]
    return y * atoms / x


def _f(value: Any, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def speed_table(rows: list[dict[str, Any]]) -> str:
    """Rows ``{system, dtype, mace: {eager, compiled}, mlip: {eager, compiled}, max_df}`` (results or None)."""
    head = ("| system | dtype | mace-torch eager ms | mlip eager ms | eager speed-up | mace-torch compiled ms "
            "| mlip compiled ms | compiled speed-up | compile s (mace-torch / mlip) | max dF (eV/A) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [r["system"], r["dtype"]]
        for mode in ("eager", "compiled"):
            mace, mlip = _ms(r, "mace", mode), _ms(r, "mlip", mode)
            speedup = f"{mace / mlip:.2f}x" if mace and mlip else ""
            cells += [_f(mace, ".1f"), _f(mlip, ".1f"), speedup]
        compile_s = [_f((r.get(fw) or {}).get("compiled", {}).get("warmup_s"), ".0f") or "-" for fw in FRAMEWORKS]
        cells += [" / ".join(compile_s), _f(r.get("max_df"), ".1e")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ms(row: dict[str, Any], framework: str, mode: str) -> float | None:
    result = (row.get(framework) or {}).get(mode) or {}
    return result.get("ms")


def memory_table(rows: list[dict[str, Any]]) -> str:
    head = "| framework | system | atoms | dtype | RSS before call (MiB) | peak RSS (MiB) (min-max) | call s |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {LABEL[r['framework']]} | {r['system']} | {r.get('atoms', '')} | {r['dtype']} | "
                         f"n/a: {r['error']} | | |")
            continue
        spread = r.get("peak_rss_all", [])
        spread = f" ({min(spread):.0f}-{max(spread):.0f})" if len(spread) > 1 else ""
        lines.append(f"| {LABEL[r['framework']]} | {r['system']} | {r['atoms']} | {r['dtype']} | "
                     f"{r['rss_before_mib']:.0f} | {r['peak_rss_mib']:.0f}{spread} | {r['call_s']:.1f} |")
    return "\n".join(lines)


def largest_table(fits: list[dict[str, Any]], budget_gib: float) -> str:
    head = ("| framework | dtype | measured peak RSS (cells: MiB) | a (MiB) | b (KiB/atom) "
            f"| largest n x n x n Si cell in {budget_gib:g} GiB | atoms | predicted RSS (MiB) |")
    lines = [f"Linear extrapolation: peak RSS = a + b * atoms fitted to the measured sizes, solved for "
             f"{budget_gib:g} GiB; not measured at the predicted size.", "", head,
             "|" + "---|" * (head.count("|") - 1)]
    for f in fits:
        measured = ", ".join(f"{n}: {mib:.0f}" for n, mib in f["measured"]) or "-"
        if f.get("n") is None:
            lines.append(f"| {LABEL[f['framework']]} | {f['dtype']} | {measured} | | | n/a: {f['note']} | | |")
            continue
        lines.append(f"| {LABEL[f['framework']]} | {f['dtype']} | {measured} | {f['a']:.0f} | {f['b'] * 1024:.1f} "
                     f"| {f['n']} | {si_atoms(f['n'])} | {f['a'] + f['b'] * si_atoms(f['n']):.0f} |")
    return "\n".join(lines)


def md_table(rows: list[dict[str, Any]]) -> str:
    head = ("| system | dtype | mode | steps | ms / step | ms in model | ms in make_batch | % of step in the "
            "calculator outside the model | target <= 5 % | % of step outside the model (with ASE's integrator) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['system']} | {r['dtype']} | {r['mode']} | n/a: {r['error']} | | | | | | |")
            continue
        calc = r.get("calculator_pct", r["outside_pct"])
        ok = "yes" if calc <= 5 else "no"
        lines.append(f"| {r['system']} | {r['dtype']} | {r['mode']} | {r['steps']} | {r['ms_step']:.2f} | "
                     f"{r['ms_model']:.2f} | {r['ms_batch']:.2f} | {calc:.1f} | {ok} | {r['outside_pct']:.1f} |")
    return "\n".join(lines)


def header(versions: dict[str, dict[str, str]], model_note: str = "") -> str:
    """Date (UTC), commit, machine and library versions."""
    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else "?"

    changed = git("status", "--porcelain", "--", "mlip", "scripts")
    dirty = " (+ uncommitted changes in mlip/ or scripts/)" if changed else ""
    libs = "; ".join(f"{LABEL[fw]} venv: " + ", ".join(f"{k} {v}" for k, v in sorted(vs.items()))
                     for fw, vs in versions.items())
    return "\n".join([
        f"- date (UTC): {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M')}",
        f"- commit: {git('rev-parse', '--short', 'HEAD')}{dirty}",
        f"- machine: {platform.platform()}, {cpu_model()}, {os.cpu_count()} logical CPUs",
        f"- {libs}",
        *([f"- {model_note}"] if model_note else []),
        "- one fresh process per measurement, run one at a time; OMP_NUM_THREADS=1, torch.set_num_threads(1)",
    ])


# ------------------------------------------------------------------------------------------
# running workers
# ------------------------------------------------------------------------------------------
class Runner:
    """Runs worker processes one at a time; remembers each venv's library versions."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work, self.count = args, work, 0
        self.python = {"mlip": sys.executable, "mace": args.mace_python}
        self.versions: dict[str, dict[str, str]] = {}
        self.model_note = ""

    def __call__(self, framework: str, task: str, **spec: Any) -> dict[str, Any]:
        self.count += 1
        tag = f"{self.count:03d}-{framework}-{task}"
        spec = {"task": task, "framework": framework, "threads": 1, "seed": self.args.seed,
                "sigma": self.args.rattle, "out": str(self.work / f"{tag}.out.json"), **spec}
        spec_path = self.work / f"{tag}.json"
        spec_path.write_text(json.dumps(spec))
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH="")
        if framework == "mace":  # e3nn 0.4.4 reads its constants.pt with a plain torch.load
            env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
        if self.args.inductor_cache == "fresh":
            env["TORCHINDUCTOR_CACHE_DIR"] = str(self.work / f"inductor-{tag}")
        start = time.perf_counter()
        try:
            proc = subprocess.run([self.python[framework], str(WORKER), str(spec_path)], capture_output=True,
                                  text=True, env=env, timeout=self.args.timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {self.args.timeout} s"}
        if proc.returncode != 0:
            why = "killed (out of memory?)" if proc.returncode in (-9, 137) else f"exit {proc.returncode}"
            last = (proc.stderr.strip().splitlines() or [""])[-1][:160]
            return {"error": f"{why}: {last}"}
        result = json.loads(Path(spec["out"]).read_text())
        result["process_s"] = time.perf_counter() - start
        self.versions.setdefault(framework, result.get("versions", {}))
        return result

    def frameworks(self) -> tuple[str, ...]:
        return FRAMEWORKS if self.args.mace_python else ("mlip",)


def prepare_models(run: Runner, work: Path, seed: int) -> dict[str, str]:
    """The model file of each framework (the same weights), built in worker processes."""
    h = mace_hyperparameters(MODELS["mp64"], MP64)
    models = {}
    if run.args.mace_python:
        mace = run("mace", "prepare-mace", out_dir=str(work), hyperparameters=h, name="mp64")
        if "error" in mace:
            raise SystemExit(f"mace-torch model: {mace['error']}")
        models["mace"] = mace["model"]
    mlip = run("mlip", "prepare-mlip", out_dir=str(work), hyperparameters=h, name="mp64")
    if "error" in mlip:
        raise SystemExit(f"mlip model: {mlip['error']}")
    models["mlip"] = mlip["model"]
    run.model_note = (f"model mp64, {mlip['parameters']} parameters; mlip's weights: "
                      + ("converted from mace-torch's" if mlip["weights"] == "converted" else "random (no mace-torch)"))
    print(f"# {run.model_note}", flush=True)
    return models


# ------------------------------------------------------------------------------------------
# sections
# ------------------------------------------------------------------------------------------
def run_speed(run: Runner, models: dict[str, str], args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for system in args.systems:
        for dtype in args.dtypes:
            row: dict[str, Any] = {"system": system, "dtype": dtype}
            for mode in args.modes:
                for fw in run.frameworks():
                    res = run(fw, "speed", model=models[fw], system=system, dtype=dtype, mode=mode,
                              repeats=args.repeats, warmup=args.warmup)
                    row.setdefault(fw, {})[mode] = res
                    check_dtype(res, dtype, f"{system} {mode} {LABEL[fw]}")
                    print(f"  {system:>6} {dtype} {mode:>8} {LABEL[fw]:>10}: " + (
                        f"n/a ({res['error']})" if "error" in res else
                        f"{res['ms']:9.1f} ms (median of {len(res['ms_all'])}), warm-up {res['warmup_s']:.1f} s, "
                        f"calculator {res['setup_s']:.1f} s, E {res['energy']:.6f} eV"), flush=True)
            compare_sides(row)
            rows.append(row)
    return rows


def check_dtype(res: dict[str, Any], dtype: str, label: str) -> None:
    """Warn (and mark the result) when a calculator's model computes in another dtype than asked for."""
    if res.get("model_dtype", dtype) != dtype:
        res["dtype_warning"] = f"{label}: asked for {dtype}, the model computes in {res['model_dtype']}"
        print(f"  # WARNING {res['dtype_warning']}", flush=True)


def compare_sides(row: dict[str, Any]) -> None:
    """Energy and force differences of the two sides' last calls (same positions); forces then dropped."""
    import numpy as np

    diffs = []
    for mode in ("eager", "compiled"):
        a, b = ((row.get(fw) or {}).get(mode) or {} for fw in FRAMEWORKS)
        if "forces" in a and "forces" in b:
            if a["rattle_checksum"] != b["rattle_checksum"]:
                print(f"  # WARNING {row['system']} {row['dtype']} {mode}: the two sides' rattles differ")
            df = float(np.abs(np.array(a["forces"]) - np.array(b["forces"])).max())
            de = abs(a["energy"] - b["energy"])
            row.setdefault("diff", {})[mode] = {"energy": de, "forces": df}
            diffs.append(df)
            print(f"  {row['system']:>6} {row['dtype']} {mode:>8}: |dE| {de:.1e} eV, max |dF| {df:.1e} eV/A")
    for fw in FRAMEWORKS:
        for res in (row.get(fw) or {}).values():
            res.pop("forces", None)
    row["max_df"] = max(diffs) if diffs else None


def run_memory(run: Runner, models: dict[str, str], cells: int, dtypes: list[str], cache: dict) -> list[dict[str, Any]]:
    rows = []
    for dtype in dtypes:
        for fw in run.frameworks():
            rows.append(memory_row(run, models, fw, dtype, cells, cache))
    return rows


def memory_row(run: Runner, models: dict[str, str], fw: str, dtype: str, cells: int, cache: dict) -> dict[str, Any]:
    """``--memory-repeats`` fresh processes of one eager call; the median of each number (and every peak)."""
    key = (fw, dtype, cells)
    if key not in cache:
        system = f"si{si_atoms(cells)}"
        runs = []
        for _ in range(run.args.memory_repeats):
            res = run(fw, "memory", model=models[fw], system=system, dtype=dtype)
            print(f"  {system:>7} {dtype} {LABEL[fw]:>10}: " + (f"n/a ({res['error']})" if "error" in res else
                  f"RSS before call {res['rss_before_mib']:.0f} MiB, peak RSS {res['peak_rss_mib']:.0f} MiB, "
                  f"call {res['call_s']:.1f} s"), flush=True)
            if "error" in res:
                runs = [res]
                break
            check_dtype(res, dtype, f"{system} memory {LABEL[fw]}")
            runs.append(res)
        cache[key] = {"framework": fw, "system": system, "dtype": dtype, "cells": cells, **median_run(runs)}
    return cache[key]


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One memory result from repeated ones: the median of the numbers, every peak in ``peak_rss_all``."""
    if "error" in runs[-1]:
        return runs[-1]
    out = dict(runs[0])
    for key in ("rss_before_mib", "peak_before_mib", "peak_rss_mib", "call_s"):
        out[key] = statistics.median(r[key] for r in runs)
    out["peak_rss_all"] = [r["peak_rss_mib"] for r in runs]
    return out


def run_largest(run: Runner, models: dict[str, str], args: argparse.Namespace, cache: dict) -> list[dict[str, Any]]:
    fits = []
    for dtype in args.dtypes:
        for fw in run.frameworks():
            measured: list[tuple[int, float]] = []
            note = ""
            for n in sorted(args.largest_cells):
                if measured and predicted_rss(measured, si_atoms(n)) > args.max_rss_gib * 1024:
                    note = f"{n}x{n}x{n} not measured (predicted over {args.max_rss_gib:g} GiB)"
                    break
                res = memory_row(run, models, fw, dtype, n, cache)
                if "error" in res:
                    note = f"{n}x{n}x{n}: {res['error']}"
                    break
                measured.append((si_atoms(n), res["peak_rss_mib"]))
            fit: dict[str, Any] = {"framework": fw, "dtype": dtype, "note": note or "fewer than two sizes",
                                   "measured": [(round((x / 8) ** (1 / 3)), y) for x, y in measured]}
            if len(measured) >= 2:
                fit["a"], fit["b"] = linear_fit([(float(x), y) for x, y in measured])
                fit["n"] = largest_cell(fit["a"], fit["b"], args.budget_gib * 1024)
                print(f"  {LABEL[fw]:>10} {dtype}: RSS = {fit['a']:.0f} MiB + {fit['b'] * 1024:.1f} KiB/atom -> "
                      f"{fit['n']}x{fit['n']}x{fit['n']} cells ({si_atoms(fit['n'])} atoms) in {args.budget_gib:g} GiB"
                      + (f"; {note}" if note else ""), flush=True)
            fits.append(fit)
    return fits


def run_md(run: Runner, models: dict[str, str], args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for system in args.systems:
        for dtype in args.dtypes:
            for mode in args.modes:
                res = run("mlip", "md", model=models["mlip"], system=system, dtype=dtype, mode=mode,
                          steps=args.md_steps, warmup=args.md_warmup, temperature=300.0, timestep_fs=1.0)
                rows.append({"system": system, "dtype": dtype, "mode": mode, **res})
                check_dtype(res, dtype, f"{system} {mode} MD")
                print(f"  {system:>6} {dtype} {mode:>8} MD: " + (f"n/a ({res['error']})" if "error" in res else
                      f"{res['ms_step']:.2f} ms/step, {res['ms_model']:.2f} in the model, "
                      f"{res['ms_batch']:.2f} in make_batch, {res['outside_pct']:.1f} % outside the model"),
                      flush=True)
    return rows


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--speed", action="store_true", help="the speed table (the default when no section is named)")
    p.add_argument("--memory", action="store_true", help="peak RSS of one eager call on Si 8 n^3 (--memory-cells)")
    p.add_argument("--largest", action="store_true", help="largest Si cell in --budget-gib (linear extrapolation)")
    p.add_argument("--md-overhead", action="store_true", help="mlip in ASE VelocityVerlet: time outside the model")
    p.add_argument("--systems", nargs="+", default=["si512", "acac"],
                   help="speed and MD systems: acac, si512 or any si<8 n^3>")
    p.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=["float32", "float64"])
    p.add_argument("--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    p.add_argument("--repeats", type=int, default=5, help="timed calls (the median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (compilation happens here)")
    p.add_argument("--seed", type=int, default=0, help="numpy seed of the rattles (and of the model's weights)")
    p.add_argument("--rattle", type=float, default=0.02, help="rattle sigma (A), redrawn before every call")
    p.add_argument("--memory-cells", type=int, default=8, help="--memory on n x n x n cells (8: 4096 atoms)")
    p.add_argument("--memory-repeats", type=int, default=3,
                   help="--memory/--largest: fresh processes per size (median; the allocator makes peaks vary)")
    p.add_argument("--largest-cells", type=int, nargs="+", default=[4, 6, 8], help="--largest: sizes measured")
    p.add_argument("--budget-gib", type=float, default=16.0, help="--largest: the memory to fit in")
    p.add_argument("--max-rss-gib", type=float, default=20.0, help="--largest: skip sizes predicted above this")
    p.add_argument("--md-steps", type=int, default=50, help="--md-overhead: timed MD steps")
    p.add_argument("--md-warmup", type=int, default=5, help="--md-overhead: MD steps before timing")
    p.add_argument("--mace-python", default=default_mace_python(), help="python of the mace-torch venv ('' to skip)")
    p.add_argument("--inductor-cache", choices=["fresh", "shared"], default="fresh",
                   help="fresh: an empty TORCHINDUCTOR_CACHE_DIR per process (first-compile times)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per measurement process")
    p.add_argument("--work-dir", default=None, help="keep model files and worker specs here (default: a temp dir)")
    p.add_argument("--markdown", default=None, help="also write the tables to this markdown file")
    p.add_argument("--json", default=None, help="also write every result as JSON")
    args = p.parse_args(argv)
    if not (args.speed or args.memory or args.largest or args.md_overhead):
        args.speed = True
    if args.mace_python and not Path(args.mace_python).exists():
        print(f"# no mace-torch python at {args.mace_python}: mlip only", file=sys.stderr)
        args.mace_python = ""
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        run = Runner(args, work)
        models = prepare_models(run, work, args.seed)
        results: dict[str, Any] = {}
        cache: dict = {}
        sections = []
        if args.speed:
            print("# speed", flush=True)
            results["speed"] = run_speed(run, models, args)
            sections += [f"## Speed: ms per energy+forces call (median of {args.repeats} after {args.warmup} "
                         f"warm-up calls; rattle {args.rattle} A before every call)", "",
                         speed_table(results["speed"]), ""]
        if args.memory:
            print("# memory", flush=True)
            results["memory"] = run_memory(run, models, args.memory_cells, args.dtypes, cache)
            sections += [f"## Memory: peak RSS of one eager energy+forces call (whole process, ru_maxrss; "
                         f"median of {args.memory_repeats} fresh processes)", "",
                         memory_table(results["memory"]), ""]
        if args.largest:
            print("# largest cell", flush=True)
            results["largest"] = run_largest(run, models, args, cache)
            sections += [f"## Largest Si cell in {args.budget_gib:g} GiB (eager)", "",
                         largest_table(results["largest"], args.budget_gib), ""]
        if args.md_overhead:
            print("# MD overhead (mlip)", flush=True)
            results["md"] = run_md(run, models, args)
            sections += [f"## MD-loop overhead: mlip's calculator in ASE VelocityVerlet (1 fs, {args.md_steps} steps "
                         f"after {args.md_warmup})", "", md_table(results["md"]), ""]
    text = "\n".join(["# Calculator benchmark: MACECalculator vs MLIPCalculator (model mp64, CPU)", "",
                      header(run.versions, run.model_note), "", *sections])
    print()
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
