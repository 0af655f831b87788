#!/usr/bin/env python
"""Does mlip's training recipe carry over from acac to periodic Si and Mo with stress? Against mace-torch.

For each system (``--systems si mo``; data in ../shared/data/<system>/{train,test}.xyz) two single-thread
trainings start at the same moment under equal load (``equal_load.race``: a one-thread ballast takes the
core of whichever ends first until the other ends):

* mlip trains ``--recipe`` (default ``configs/acac_fast.yaml``) changed only in its data keys and E0s:
  data files, 10 % validation, keys energy/forces/stress, ``e0s: fit`` (no isolated atoms), output
  folder, a checkpoint every epoch (all kept), CPU, ``--seed``. Epochs, lr, loss weights, dtype: the
  recipe's own (a recipe stress weight of 0 means mlip does not fit stress at all; the report says so).
* mace-torch 0.3.16 (its own venv, ``--mace-python``) trains the reference architecture of
  ``benchmark_train.bench_mace`` (``--model MACE``, float64, batch 5, lr 0.01, AMSGrad, EMA 0.99) for
  ``--mace-epochs`` epochs with ``--loss stress``, ``--E0s average`` and the recipe's energy/forces/stress
  weights (an unset stress weight: what mlip resolves it to for data with stress; 0 becomes mace-torch's
  default 1.0).

After both have ended (evaluation costs no training time) mace-torch's final model, every mlip
checkpoint (its best EMA weights so far, as ``benchmark_time_to_accuracy`` does) and mlip's
``model.pt`` are evaluated on test.xyz: RMSE of energy (meV/atom), forces (meV/A) and stress (meV/A^3,
all 9 components, ASE sign as in the data), paired by frame. Reported per system and in a summary: the
final errors, process wall times (and mace-torch's last epoch line), the first mlip checkpoint at or below
mace-torch's final E, F and S together, its wall time (checkpoint mtime minus process start) and the
ratio to mace-torch's time, and whether mlip ended before or after mace-torch.

    python scripts/benchmark_carryover.py --json runs/carryover/carryover.json        # the full benchmark
    python scripts/benchmark_carryover.py --systems si --mace-epochs 1 --train-subset 12 --test-subset 4 \\
        --mlip-override train.max_epochs=2                                             # a quick check only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_inference_common import default_mace_python  # noqa: E402  (scripts are not a package)
from benchmark_time_to_accuracy import checkpoint_model, eval_model, mace_last_epoch_s  # noqa: E402
from benchmark_train import REPO, slice_xyz, test_errors  # noqa: E402
from equal_load import race  # noqa: E402

DATA = REPO.parent / "shared" / "data"
METRICS = ("energy_rmse_meV_per_atom", "forces_rmse_meV_per_A", "stress_rmse_meV_per_A3")
MACE_DEFAULT_STRESS_WEIGHT = 1.0


# ---------------------------------------------------------------------------------------------- errors
def _full_stress(value: object) -> np.ndarray:
    """A stress as a 3x3 array from 9 (row-major) or 6 (Voigt xx yy zz yz xz xy) numbers."""
    s = np.asarray(value, dtype=float).reshape(-1)
    if s.size == 6:
        xx, yy, zz, yz, xz, xy = s
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    if s.size != 9:
        raise ValueError(f"stress with {s.size} components")
    return s.reshape(3, 3)


def stress_errors(reference: Path, predictions: Path, prefix: str) -> dict[str, float]:
    """RMSE (meV/A^3) over all 9 stress components of the frames that have both a label and a prediction."""
    import ase.io

    refs, preds = ase.io.read(reference, ":"), ase.io.read(predictions, ":")
    if len(refs) != len(preds):
        raise RuntimeError(f"{predictions}: {len(preds)} frames, reference has {len(refs)}")
    diffs = []
    for r, p in zip(refs, preds):
        if f"{prefix}stress" not in p.info:
            continue
        try:
            ref = r.get_stress(voigt=False)
        except Exception:  # noqa: BLE001 - an unlabelled frame
            continue
        diffs.append((_full_stress(p.info[f"{prefix}stress"]) - ref).ravel())
    rmse = 1000 * float(np.sqrt(np.mean(np.concatenate(diffs) ** 2))) if diffs else float("nan")
    return {"stress_rmse_meV_per_A3": rmse, "n_stress_frames": len(diffs)}


def errors_with_stress(reference: Path, predictions: Path, prefix: str) -> dict[str, float]:
    """``benchmark_train.test_errors`` (energy, forces) plus :func:`stress_errors`."""
    return {**test_errors(reference, predictions, prefix), **stress_errors(reference, predictions, prefix)}


def first_reaching(curve: list[dict], target: dict[str, float]) -> dict | None:
    """The first checkpoint of ``curve`` (in order) at or below every target in ``target`` (NaN never is)."""
    for c in curve:
        if all(c[k] <= v for k, v in target.items()):
            return c
    return None


# ---------------------------------------------------------------------------------------------- commands
def recipe_loss_weights(recipe: Path, overrides: list[str]) -> tuple[dict[str, float], list[str]]:
    """The energy/forces/stress weights mlip trains the recipe with on data that carry stress.

    From the recipe's ``loss:`` section, mlip's defaults where absent; an unset stress weight is what mlip
    resolves it to for data with stress.
    """
    from mlip.config import LossConfig, apply_overrides, read_yaml

    loss = apply_overrides(read_yaml(recipe), overrides).get("loss") or {}
    default = LossConfig()
    w = {k: loss.get(f"{k}_weight", getattr(default, f"{k}_weight")) for k in ("energy", "forces", "stress")}
    notes = []
    if w["stress"] is None:
        w["stress"] = LossConfig(stress_weight=None).resolved_stress_weight(True)
        notes.append(f"recipe leaves the stress weight unset: mlip resolves it to {w['stress']} for data with stress")
    w = {k: float(v) for k, v in w.items()}
    if loss.get("type", default.type) != "mse":
        notes.append(f"recipe loss type {loss.get('type')!r}; mace-torch uses its weighted 'stress' loss (MSE)")
    if w["stress"] == 0:
        notes.append(f"mlip's stress weight is 0: mlip does not fit stress; mace-torch uses its default "
                     f"{MACE_DEFAULT_STRESS_WEIGHT}")
    return w, notes


def mlip_command(args: argparse.Namespace, train: Path, test: Path, out: Path) -> list[str]:
    """``mlip-train`` on the recipe with only data keys, E0s and run bookkeeping overridden."""
    from mlip.config import read_yaml

    cmd = [sys.executable, "-m", "mlip.cli.train", "--config", str(args.recipe),
           f"data.train={train}", f"data.test=[{test}]", "data.valid_fraction=0.1", "data.energy_key=energy",
           "data.forces_key=forces", "data.stress_key=stress", "data.e0s=fit"]
    if "isolated_atoms" in (read_yaml(args.recipe).get("data") or {}):
        cmd.append("data.isolated_atoms=null")
    return cmd + [f"output_dir={out}", "train.progress=false", "train.plot=false", "device=cpu",
                  "checkpoint.interval=1", "checkpoint.keep=100000", f"seed={args.seed}", *args.mlip_override]


def mace_command(args: argparse.Namespace, system: str, train: Path, mdir: Path, w: dict[str, float]) -> list[str]:
    """mace-torch's reference model (as ``bench_mace``) with stress in the loss and averaged E0s."""
    stress_w = w["stress"] if w["stress"] > 0 else MACE_DEFAULT_STRESS_WEIGHT
    return [
        args.mace_python, "-m", "mace.cli.run_train", "--name", system, "--work_dir", str(mdir),
        "--seed", str(args.seed), "--device", "cpu", "--default_dtype", "float64",
        "--train_file", str(train), "--valid_fraction", "0.1", "--E0s", "average",
        "--energy_key", "energy", "--forces_key", "forces", "--stress_key", "stress",
        "--model", "MACE", "--hidden_irreps", "32x0e + 32x1o", "--max_ell", "3", "--correlation", "3",
        "--num_interactions", "2", "--r_max", "5.0", "--num_radial_basis", "8", "--num_cutoff_basis", "5",
        "--radial_MLP", "[64, 64, 64]", "--MLP_irreps", "16x0e",
        "--interaction", "RealAgnosticResidualInteractionBlock", "--interaction_first", "RealAgnosticInteractionBlock",
        "--scaling", "rms_forces_scaling", "--batch_size", "5", "--valid_batch_size", "10", "--lr", "0.01",
        "--amsgrad", "--ema", "--ema_decay", "0.99", "--loss", "stress", "--energy_weight", str(w["energy"]),
        "--forces_weight", str(w["forces"]), "--stress_weight", str(stress_w),
        "--max_num_epochs", str(args.mace_epochs), "--eval_interval", "1", "--save_cpu",
    ]


def run_env(threads: int) -> dict[str, str]:
    """Environment of every process: ``threads`` OpenMP/MKL threads, the repository importable."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"  # mace-torch pickles whole models; torch >= 2.6 refuses
    return env


# ---------------------------------------------------------------------------------------------- evaluation
def eval_mace(args: argparse.Namespace, model: Path, test: Path, work: Path, env: dict[str, str]) -> dict:
    """mace-torch's ``eval_configs`` (with stress) on ``test``; errors computed here."""
    pred = work / f"mace_pred_{test.stem}.xyz"
    ev = subprocess.run(
        [args.mace_python, "-m", "mace.cli.eval_configs", "--configs", str(test), "--model", str(model),
         "--output", str(pred), "--default_dtype", "float64", "--device", "cpu", "--batch_size", "10",
         "--compute_stress"], env=env, cwd=REPO, capture_output=True, text=True)
    if ev.returncode != 0:
        raise RuntimeError(f"mace eval_configs failed: {ev.stderr.strip()[-2000:]}")
    return errors_with_stress(test, pred, "MACE_")


def _mlip_pred(work: Path, tag: str, test: Path) -> Path:
    """Where ``benchmark_time_to_accuracy.eval_model`` writes the predictions of ``tag`` on ``test``."""
    return work / f"mlip_{tag}_{test.stem}.xyz"


def checkpoint_model_file(path: Path, dst: Path) -> Path:
    """A model file of :func:`benchmark_time_to_accuracy.checkpoint_model` (the checkpoint's best EMA weights)."""
    from mlip.io.model_file import save_model

    save_model(checkpoint_model(path), dst)
    return dst


def eval_mlip(model: Path, test: Path, work: Path, env: dict[str, str], tag: str) -> dict:
    """Errors (E, F, S) of an mlip model file on ``test`` (``mlip-eval`` via ``eval_model``)."""
    errors = eval_model(model, test, work, env, tag)
    return {**errors, **stress_errors(test, _mlip_pred(work, tag, test), "MLIP_")}


def mlip_curve(out: Path, t0: float, test: Path, work: Path, env: dict[str, str]) -> list[dict]:
    """Errors of every checkpoint's best EMA weights, with its wall time (mtime minus process start)."""
    curve = []
    for path in sorted((out / "checkpoints").glob("epoch-*.pt")):
        wall = path.stat().st_mtime - t0
        tag = f"{out.name}_{path.stem}"
        model = checkpoint_model_file(path, work / f"{tag}_model.pt")
        curve.append({"name": path.stem, "wall_s": wall, **eval_mlip(model, test, work, env, tag)})
    return curve


# ---------------------------------------------------------------------------------------------- one system
def run_system(args: argparse.Namespace, system: str) -> dict:
    """Race mlip against mace-torch on ``system``, then evaluate both on its test file."""
    work = (args.workdir / system).resolve()
    work.mkdir(parents=True, exist_ok=True)
    train = slice_xyz(args.data / system / "train.xyz", work / "train_subset.xyz", args.train_subset)
    test = slice_xyz(args.data / system / "test.xyz", work / "test_subset.xyz", args.test_subset)
    weights, notes = recipe_loss_weights(args.recipe, args.mlip_override)
    out, mdir = work / f"mlip_{system}", work / "mace_run"
    for d in (out, mdir):
        shutil.rmtree(d, ignore_errors=True)
    mdir.mkdir()
    env = run_env(args.threads)
    runs = {"mace": (mace_command(args, system, train, mdir, weights), env, work / "mace_train.log"),
            "mlip": (mlip_command(args, train, test, out), env, work / "mlip_train.log")}
    for note in notes:
        print(f"[{system}] note: {note}", flush=True)
    print(f"[{system}] training mlip and mace-torch side by side ...", flush=True)
    res = race(runs, ballast=not args.no_ballast)
    for name, r in res.items():
        if r.returncode != 0:
            raise RuntimeError(f"{name} training failed (exit {r.returncode}); see {runs[name][2]}")
    print(f"[{system}] evaluating ...", flush=True)
    mace = {**vars(res["mace"]), "last_epoch_s": mace_last_epoch_s(mdir, res["mace"].t0),
            "test": eval_mace(args, mdir / f"{system}.model", test, work, env)}
    mlip = {**vars(res["mlip"]), "test": eval_mlip(out / "model.pt", test, work, env, f"{out.name}_final"),
            "curve": mlip_curve(out, res["mlip"].t0, test, work, env)}
    target = {k: mace["test"][k] for k in METRICS}
    hit = first_reaching(mlip["curve"], target)
    mace_s = mace["last_epoch_s"] if mace["last_epoch_s"] is not None else mace["wall_s"]
    return {"system": system, "train": str(train), "test": str(test), "notes": notes,
            "recipe_loss_weights": weights,
            "commands": {k: v[0] for k, v in runs.items()}, "mace": mace, "mlip": mlip, "target": target,
            "hit": hit, "ratio": hit["wall_s"] / mace_s if hit else None, "wall_ratio": mlip["wall_s"] / mace["wall_s"],
            "mlip_ended_after_mace": mlip["t_end"] > mace["t_end"]}


# ---------------------------------------------------------------------------------------------- report
def _f(x: float | None, width: int, digits: int = 2) -> str:
    return f"{'-':>{width}}" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:>{width}.{digits}f}"


def _errs(e: dict) -> str:
    return f"{_f(e[METRICS[0]], 9)} {_f(e[METRICS[1]], 8)} {_f(e[METRICS[2]], 10)}"


def format_system(r: dict) -> str:
    """One system's table: final errors and times, mlip's checkpoint curve, time to mace-torch's accuracy."""
    mace, mlip, hit = r["mace"], r["mlip"], r["hit"]
    head = f"{'':<22} {'E meV/at':>9} {'F meV/A':>8} {'S meV/A^3':>10} {'wall s':>8} {'last epoch s':>12}"
    lines = [f"== {r['system']}: train {r['train']}, test {r['test']} ({mace['test']['n_frames']} frames)",
             *(f"   note: {n}" for n in r["notes"]), head, "-" * len(head),
             f"{'mace-torch (final)':<22} {_errs(mace['test'])} {_f(mace['wall_s'], 8, 1)} "
             f"{_f(mace['last_epoch_s'], 12, 1)}",
             f"{'mlip model.pt':<22} {_errs(mlip['test'])} {_f(mlip['wall_s'], 8, 1)}", "",
             "mlip checkpoints (best EMA weights so far; wall s = checkpoint mtime - process start):"]
    for c in mlip["curve"]:
        ok = " reached" if hit is not None and c["name"] == hit["name"] else ""
        lines.append(f"{c['name']:<22} {_errs(c)} {_f(c['wall_s'], 8, 1)}{ok}")
    lines.append(f"target (mace-torch's final): E <= {_f(r['target'][METRICS[0]], 0)} meV/atom, F <= "
                 f"{_f(r['target'][METRICS[1]], 0)} meV/A, S <= {_f(r['target'][METRICS[2]], 0)} meV/A^3")
    lines.append(f"mlip: reached at {hit['wall_s']:.1f} s ({hit['name']}), ratio mlip/mace {r['ratio']:.3f}"
                 if hit else "mlip: mace-torch's E, F and S not all reached by any checkpoint")
    lines.append(f"process wall ratio mlip/mace {r['wall_ratio']:.3f}; mlip ended "
                 f"{'after' if r['mlip_ended_after_mace'] else 'before'} mace-torch")
    return "\n".join(lines)


def format_summary(results: list[dict]) -> str:
    """One line per system: both frameworks' final errors and times, mlip's time to mace-torch's accuracy."""
    head = (f"{'system':<6} {'framework':<10} {'E meV/at':>9} {'F meV/A':>8} {'S meV/A^3':>10} {'wall s':>8} "
            f"{'train s':>8} {'reached at':>16} {'ratio':>6} {'ended':>6}")
    lines = ["summary (train s: mace-torch's last epoch line; ratio: mlip's time to mace-torch's final E, F and S "
             "over mace-torch's train s)", head, "-" * len(head)]
    for r in results:
        mace, mlip, hit = r["mace"], r["mlip"], r["hit"]
        lines.append(f"{r['system']:<6} {'mace-torch':<10} {_errs(mace['test'])} {_f(mace['wall_s'], 8, 1)} "
                     f"{_f(mace['last_epoch_s'], 8, 1)}")
        reached = f"{hit['name']}@{hit['wall_s']:.0f}s" if hit else "not reached"
        lines.append(f"{'':<6} {'mlip':<10} {_errs(mlip['test'])} {_f(mlip['wall_s'], 8, 1)} {'':>8} "
                     f"{reached:>16} {_f(r['ratio'], 6, 3)} {'after' if r['mlip_ended_after_mace'] else 'before':>6}")
    return "\n".join(lines)


def _git_head() -> str:
    res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return res.stdout.strip() or "unknown"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", nargs="+", default=["si", "mo"], help="folders of --data (default: si mo)")
    p.add_argument("--recipe", type=Path, default=REPO / "configs" / "acac_fast.yaml", help="mlip config")
    p.add_argument("--mace-epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="OMP/MKL threads of each training")
    p.add_argument("--workdir", type=Path, default=REPO / "runs" / "carryover")
    p.add_argument("--data", type=Path, default=DATA, help="folder with <system>/{train,test}.xyz")
    p.add_argument("--mace-python", default=default_mace_python())
    p.add_argument("--train-subset", type=int, default=None, help="first N training frames (quick checks)")
    p.add_argument("--test-subset", type=int, default=None, help="first N test frames (quick checks)")
    p.add_argument("--mlip-override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra mlip-train override, e.g. train.max_epochs=2; for quick checks only (it changes the "
                        "recipe under test); repeatable")
    p.add_argument("--no-ballast", action="store_true", help="no ballast on the core of the run that ends first")
    p.add_argument("--json", type=Path, default=None, help="write everything as JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [s for s in args.systems if not (args.data / s / "train.xyz").is_file()]
    if missing:
        print(f"error: no train.xyz for {', '.join(missing)} under {args.data} (pass --data)", file=sys.stderr)
        return 2
    stamp = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}, mlip {_git_head()}, recipe {args.recipe}, " \
            f"mace-torch {args.mace_epochs} epochs, seed {args.seed}, {args.threads} thread(s) each, " \
            f"ballast {'off' if args.no_ballast else 'on'}" + \
            (f", mlip overrides {' '.join(args.mlip_override)}" if args.mlip_override else "")
    print(stamp, flush=True)
    results = []
    for system in args.systems:
        results.append(run_system(args, system))
        print(format_system(results[-1]), "\n", flush=True)
    print(stamp)
    print(format_summary(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"header": stamp, "args": vars(args), "systems": results}, indent=1,
                                        default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
