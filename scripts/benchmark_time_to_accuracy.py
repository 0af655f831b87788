#!/usr/bin/env python
"""Wall time to mace-torch's 40-epoch test accuracy on acac: mlip's fast recipe against mace-torch, side by side.

Both trainings start at the same moment as two processes with one thread each (``--threads``), so they
share the machine's load alike:

* mace-torch 0.3.16 (its own venv, ``--mace-python``) runs the reference recipe of
  ``scripts/benchmark_train.py`` (``--model MACE``, 40 epochs, float64, batch 5, lr 0.01, EMA 0.99);
* mlip runs ``--recipe`` (default ``configs/acac_fast.yaml``) on the same files (train_300K, 10 %
  validation, isolated-atom E0s), writing a checkpoint every ``--eval-every`` epochs. Several recipes
  run one after the other on the second thread while mace-torch trains (a recipe still running after
  mace-torch has finished is marked so in the report).

Time is wall time from the process start (interpreter start-up, data reading, statistics and any
compilation included). mace-torch's time is that of its last epoch line in its log; mlip's time at a
checkpoint is the checkpoint file's modification time. After both have finished (so the evaluation
costs no training time), each mlip checkpoint's model -- the best EMA weights by validation loss so far,
what ``model.pt`` would hold had the run stopped there -- is evaluated on test_MD_300K. The target is
mace-torch's final test_MD_300K accuracy from this same run (force RMSE and energy RMSE per atom), or
``--target-forces`` / ``--target-energy`` (meV/A, meV/atom). Printed: time to the target for each, the
ratio, and the final errors of both on test_MD_300K and test_MD_600K.

    python scripts/benchmark_time_to_accuracy.py                       # about 20-30 min on 2 cores
    python scripts/benchmark_time_to_accuracy.py --target-forces 29.9 --target-energy 6.0
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_inference_common import default_mace_python  # noqa: E402  (scripts are not a package)
from benchmark_train import (  # noqa: E402
    DEFAULT_DATA, REPO, _EPOCH_LINE, bench_mace, run_measured, slice_xyz, test_errors,
)


def mace_run(args: argparse.Namespace, train: Path, tests: list[Path], work: Path, env: dict, out: dict) -> None:
    """mace-torch's reference run (``benchmark_train.bench_mace``) with its start time; result in ``out``."""
    from datetime import datetime

    margs = argparse.Namespace(**{**vars(args), "epochs": args.mace_epochs})
    out["t0"] = time.time()
    try:
        out["result"] = bench_mace(margs, train, tests, work, env)
    except Exception as err:  # reported by the main thread
        out["error"] = err
        return
    stamps = []
    for log in sorted((work / "mace_run" / "logs").glob("*.log")):
        for line in log.read_text().splitlines():
            m = _EPOCH_LINE.match(line)
            if m:
                stamps.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp())
    out["train_s"] = (max(stamps) - out["t0"]) if stamps else out["result"]["wall_s"]


def mlip_run(args: argparse.Namespace, recipe: Path, train: Path, tests: list[Path], work: Path, env: dict) -> dict:
    """Train ``recipe`` with a checkpoint every ``--eval-every`` epochs (all kept)."""
    out = work / f"mlip_{recipe.stem}"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    cmd = [
        sys.executable, "-m", "mlip.cli.train", "--config", str(recipe),
        f"data.train={train}", f"data.test=[{','.join(str(t) for t in tests)}]",
        f"data.isolated_atoms={args.data / 'isolated_atoms.xyz'}", f"output_dir={out}",
        "train.progress=false", "train.plot=false", "device=cpu",
        f"checkpoint.interval={args.eval_every}", "checkpoint.keep=100000",
    ]
    t0 = time.time()
    log = work / f"mlip_{recipe.stem}_train.log"
    rc, wall, rss = run_measured(cmd, env, log)
    if rc != 0:
        raise RuntimeError(f"mlip training failed (exit {rc}); see {log}")
    ckpts = sorted((out / "checkpoints").glob("*.pt"), key=lambda p: p.stat().st_mtime)
    return {"recipe": str(recipe), "t0": t0, "t_end": time.time(), "wall_s": wall, "peak_rss_MB": rss, "out": out,
            "checkpoints": [(p, p.stat().st_mtime - t0) for p in ckpts]}


def eval_checkpoint(path: Path, test: Path, work: Path, env: dict) -> dict:
    """Test errors of a checkpoint's best EMA weights (saved as a model file, evaluated by mlip-eval)."""
    import torch

    from mlip.io.model_file import save_model
    from mlip.nn.hparams import ModelHyperparameters
    from mlip.nn.model import build_model
    from mlip.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    state = ckpt["best_state"] if ckpt.get("best_state") is not None else ckpt["model"]
    dtype = torch.float32 if any(v.dtype == torch.float32 for v in state.values()) else torch.float64
    model = build_model(ModelHyperparameters.from_dict(ckpt["hparams"]), dtype=dtype)
    model.load_state_dict(state)
    model_path = work / f"{path.parent.parent.name}_{path.stem}_model.pt"
    save_model(model, model_path)
    return eval_model(model_path, test, work, env, f"{path.parent.parent.name}_{path.stem}")


def eval_model(model_path: Path, test: Path, work: Path, env: dict, tag: str) -> dict:
    pred = work / f"mlip_{tag}_{test.stem}.xyz"
    ev = subprocess.run(
        [sys.executable, "-m", "mlip.cli.eval", "--model", str(model_path), "--data", str(test),
         "--output", str(pred), "--batch-size", "10", "--device", "cpu"],
        env=env, cwd=REPO, capture_output=True, text=True,
    )
    if ev.returncode != 0:
        raise RuntimeError(f"mlip-eval failed: {ev.stderr.strip()}")
    return test_errors(test, pred, "MLIP_")


def report(mace: dict, mlip: dict, curve: list[dict], target: tuple[float, float]) -> str:
    """One recipe's checkpoint table, time to the target, ratio and final errors."""
    tf, te = target
    alone = mlip["t_end"] > mace["t_end"]
    lines = [f"recipe {mlip['recipe']}" + (" (finished after mace-torch: partly not side by side)" if alone else ""),
             f"target (test_MD_300K): force RMSE <= {tf:.2f} meV/A and energy RMSE <= {te:.2f} meV/atom", "",
             "mlip checkpoints (wall s from process start, test_MD_300K):",
             f"{'checkpoint':<22} {'wall s':>8} {'E meV/at':>9} {'F meV/A':>8}  reached"]
    hit = None
    for c in curve:
        ok = c["forces_rmse_meV_per_A"] <= tf and c["energy_rmse_meV_per_atom"] <= te
        hit = hit or (c if ok else None)
        lines.append(f"{c['name']:<22} {c['wall_s']:>8.1f} {c['energy_rmse_meV_per_atom']:>9.2f} "
                     f"{c['forces_rmse_meV_per_A']:>8.2f}  {'yes' if ok else ''}")
    lines += ["", f"mace-torch: 40 epochs in {mace['train_s']:.1f} s (process wall {mace['result']['wall_s']:.1f} s)",
              f"mlip: target reached at {hit['wall_s']:.1f} s ({hit['name']}), ratio mlip/mace "
              f"{hit['wall_s'] / mace['train_s']:.3f}" if hit else "mlip: target not reached",
              f"mlip: whole run {mlip['wall_s']:.1f} s (process wall, final evaluation included)", "",
              f"{'final':<11} {'test':<14} {'E meV/at':>9} {'F meV/A':>8}"]
    for name, tests in (("mace-torch", mace["result"]["tests"]), ("mlip", mlip["tests"])):
        for t, e in tests.items():
            lines.append(f"{name:<11} {t:<14} {e['energy_rmse_meV_per_atom']:>9.2f} {e['forces_rmse_meV_per_A']:>8.2f}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", type=Path, nargs="+", default=[REPO / "configs" / "acac_fast.yaml"],
                   help="mlip config(s); several run one after the other next to mace-torch")
    p.add_argument("--mace-epochs", type=int, default=40)
    p.add_argument("--eval-every", type=int, default=1, help="mlip checkpoint interval (epochs)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=REPO / "runs" / "time_to_accuracy")
    p.add_argument("--mace-python", default=default_mace_python())
    p.add_argument("--target-forces", type=float, default=None, help="meV/A (default: mace-torch's, this run)")
    p.add_argument("--target-energy", type=float, default=None, help="meV/atom (default: mace-torch's, this run)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if not (args.data / "train_300K.xyz").is_file():
        print(f"error: {args.data / 'train_300K.xyz'} not found (pass --data)", file=sys.stderr)
        return 2
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    train = slice_xyz(args.data / "train_300K.xyz", work / "train_subset.xyz", None)
    tests = [slice_xyz(args.data / f"test_MD_{t}.xyz", work / f"test_MD_{t}.xyz", None) for t in ("300K", "600K")]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    mace: dict = {}
    thread = threading.Thread(target=mace_run, args=(args, train, tests, work, env, mace))
    thread.start()  # both processes start now
    runs = [mlip_run(args, recipe, train, tests, work, env) for recipe in args.recipe]
    thread.join()
    if "error" in mace:
        raise mace["error"]
    mace["t_end"] = mace["t0"] + mace["result"]["wall_s"]
    ref = mace["result"]["tests"]["test_MD_300K"]
    target = (args.target_forces if args.target_forces is not None else ref["forces_rmse_meV_per_A"],
              args.target_energy if args.target_energy is not None else ref["energy_rmse_meV_per_atom"])
    summary: dict = {"mace": {k: v for k, v in mace.items() if k != "error"}, "target": target, "mlip": []}
    for mlip in runs:
        mlip["tests"] = {t.stem: eval_model(mlip["out"] / "model.pt", t, work, env, f"{mlip['out'].name}_final")
                         for t in tests}
        curve = [{"name": path.stem, "wall_s": wall, **eval_checkpoint(path, tests[0], work, env)}
                 for path, wall in mlip["checkpoints"]]
        print(report(mace, mlip, curve, target), "\n", flush=True)
        summary["mlip"].append({**{k: v for k, v in mlip.items() if k != "checkpoints"}, "curve": curve})
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
