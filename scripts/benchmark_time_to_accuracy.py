#!/usr/bin/env python
"""Wall time to mace-torch's own 40-epoch test accuracy on acac, mlip's recipe against that same run.

For each seed (``--seeds``), two processes with one thread each (``--threads``) start at the same moment:

* mace-torch 0.3.16 (its own venv, ``--mace-python``) runs the reference recipe of
  ``scripts/benchmark_train.py`` (``--model MACE``, 40 epochs, float64, batch 5, lr 0.01, EMA 0.99, the seed);
* mlip runs ``--recipe`` (default ``configs/acac_fast.yaml``) with the same seed on the same files (train_300K,
  10 % validation, isolated-atom E0s), writing a checkpoint every ``--eval-every`` epochs.

Equal load: the two cores share caches, so when one run ends the other would speed up. A one-thread
ballast (``scripts/equal_load.py``) takes over the core of whichever ends first until the other ends
(``--no-ballast`` turns that off, the old timing).

Time is wall time from each process start (interpreter start-up, data reading, statistics and any
compilation included). Two timings of mace-torch are printed: the time of its last epoch line in its log
(its 40 epochs, the default denominator) and its process wall time (with its final evaluation); mlip's
time at a checkpoint is the checkpoint file's modification time. After both have finished (so evaluation
costs no training time) each mlip checkpoint's model -- the best EMA weights by validation loss so far,
what ``model.pt`` would hold had the run stopped there -- is evaluated on test_MD_300K and test_MD_600K.
The target is mace-torch's final accuracy from this same run, all three numbers: energy RMSE per atom and
force RMSE on test_MD_300K, force RMSE on test_MD_600K (``--target-*`` replace them).

    python scripts/benchmark_time_to_accuracy.py --seeds 1 2      # about 25-35 min per seed on 2 cores
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_inference_common import default_mace_python  # noqa: E402  (scripts are not a package)
from benchmark_train import (  # noqa: E402
    DEFAULT_DATA, REPO, _EPOCH_LINE, mace_command, mace_results, slice_xyz, test_errors,
)
from equal_load import race  # noqa: E402

TARGET_KEYS = (("test_MD_300K", "energy_rmse_meV_per_atom"), ("test_MD_300K", "forces_rmse_meV_per_A"),
               ("test_MD_600K", "forces_rmse_meV_per_A"))
"""The three numbers mlip must reach: E300, F300, F600."""


def mace_last_epoch_s(mdir: Path, t0: float) -> float | None:
    """Seconds from the mace process start ``t0`` to the last epoch line of the logs of run dir ``mdir``."""
    stamps = []
    for log in sorted((mdir / "logs").glob("*.log")):
        for line in log.read_text().splitlines():
            m = _EPOCH_LINE.match(line)
            if m:
                stamps.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp())
    return (max(stamps) - t0) if stamps else None


def mlip_command(args: argparse.Namespace, seed: int, train: Path, tests: list[Path], out: Path) -> list[str]:
    """``mlip-train`` of the recipe with the seed, checkpoints every ``--eval-every`` epochs (all kept)."""
    return [
        sys.executable, "-m", "mlip.cli.train", "--config", str(args.recipe),
        f"data.train={train}", f"data.test=[{','.join(str(t) for t in tests)}]",
        f"data.isolated_atoms={args.data / 'isolated_atoms.xyz'}", f"output_dir={out}",
        "train.progress=false", "train.plot=false", "device=cpu", f"seed={seed}",
        f"checkpoint.interval={args.eval_every}", "checkpoint.keep=100000",
    ] + list(args.mlip_override)


def run_seed(args: argparse.Namespace, seed: int, train: Path, tests: list[Path], env: dict) -> dict:
    """One race of mace-torch and mlip with ``seed``; both runs' results and mlip's checkpoints."""
    import shutil

    work = args.workdir.resolve() / f"seed{seed}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    margs = argparse.Namespace(**{**vars(args), "epochs": args.mace_epochs, "seed": seed})
    out = work / "mlip_run"
    res = race({"mace": (mace_command(margs, train, work), env, work / "mace_train.log"),
                "mlip": (mlip_command(args, seed, train, tests, out), env, work / "mlip_train.log")},
               ballast=not args.no_ballast)
    for name, r in res.items():
        if r.returncode != 0:
            raise RuntimeError(f"{name} training failed (exit {r.returncode}); see {work / (name + '_train.log')}")
    mace = mace_results(margs, tests, work, env, res["mace"].wall_s, res["mace"].peak_rss_MB)
    mace["train_s"] = mace_last_epoch_s(work / "mace_run", res["mace"].t0) or res["mace"].wall_s
    mace["epochs"] = args.mace_epochs
    ckpts = sorted((out / "checkpoints").glob("*.pt"), key=lambda p: p.stat().st_mtime)
    mlip = {"recipe": str(args.recipe), "wall_s": res["mlip"].wall_s, "peak_rss_MB": res["mlip"].peak_rss_MB,
            "ended_first": res["mlip"].t_end < res["mace"].t_end,
            "tests": {t.stem: eval_model(out / "model.pt", t, work, env, "final") for t in tests},
            "curve": [{"name": p.stem, "wall_s": p.stat().st_mtime - res["mlip"].t0,
                       **eval_checkpoint(p, tests, work, env)} for p in ckpts]}
    return {"seed": seed, "mace": mace, "mlip": mlip}


def checkpoint_model(path: Path) -> "torch.nn.Module":
    """The model of a checkpoint's best EMA weights (what ``model.pt`` would hold had the run stopped there)."""
    import torch

    from mlip.nn.hparams import ModelHyperparameters
    from mlip.nn.model import build_model
    from mlip.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    state = ckpt["best_state"] if ckpt.get("best_state") is not None else ckpt["model"]
    dtype = torch.float32 if any(v.dtype == torch.float32 for v in state.values()) else torch.float64
    model = build_model(ModelHyperparameters.from_dict(ckpt["hparams"]), dtype=dtype)
    model.load_state_dict(state)
    return model


def eval_checkpoint(path: Path, tests: list[Path], work: Path, env: dict) -> dict:
    """Test errors of :func:`checkpoint_model`, evaluated in this process (mlip-eval's own function)."""
    import torch

    from mlip.train.evaluation import evaluate_file

    model = checkpoint_model(path)
    out = {}
    for t in tests:  # no interpreter start-up per checkpoint
        pred = work / f"mlip_{path.stem}_{t.stem}.xyz"
        with contextlib.redirect_stdout(io.StringIO()):
            evaluate_file(model, str(t), batch_size=10, output=str(pred), device=torch.device("cpu"))
        out[t.stem] = test_errors(t, pred, "MLIP_")
    return out


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


def _three(errors: dict) -> tuple[float, float, float]:
    """(E300 meV/atom, F300 meV/A, F600 meV/A) of a ``{test: errors}`` dict."""
    return tuple(errors[t][k] for t, k in TARGET_KEYS)  # type: ignore[return-value]


def first_reaching(curve: list[dict], target: tuple[float, ...]) -> dict | None:
    """The first checkpoint at or below every target number (E300, F300, F600), or None."""
    for c in curve:
        if all(v <= t for v, t in zip(_three(c), target)):
            return c
    return None


def report(run: dict, target: tuple[float, ...]) -> str:
    """One seed's checkpoint table, time to the target under both mace timings, final errors."""
    mace, mlip = run["mace"], run["mlip"]
    lines = [f"seed {run['seed']}: recipe {mlip['recipe']}; mlip ended {'first' if mlip['ended_first'] else 'last'}",
             "target (mace-torch's final, this run): E300 <= {:.2f} meV/atom, F300 <= {:.2f} meV/A, "
             "F600 <= {:.2f} meV/A".format(*target), "",
             f"{'mlip checkpoint':<18} {'wall s':>7} {'E300':>6} {'F300':>6} {'F600':>6}  reached"]
    hit = first_reaching(mlip["curve"], target)
    for c in mlip["curve"]:
        ok = all(v <= t for v, t in zip(_three(c), target))
        lines.append(f"{c['name']:<18} {c['wall_s']:>7.1f} " + " ".join(f"{v:>6.2f}" for v in _three(c))
                     + ("  yes" if ok else ""))
    lines += ["", f"mace-torch: {mace['epochs']} epochs in {mace['train_s']:.1f} s (last epoch line); "
              f"process wall {mace['wall_s']:.1f} s"]
    if hit:
        lines.append(f"mlip: all three reached at {hit['wall_s']:.1f} s ({hit['name']}); ratio mlip/mace "
                     f"{hit['wall_s'] / mace['train_s']:.3f} (to mace's last epoch), "
                     f"{hit['wall_s'] / mace['wall_s']:.3f} (to mace's process wall)")
    else:
        lines.append("mlip: target not reached")
    lines += [f"mlip: whole run {mlip['wall_s']:.1f} s (process wall, final evaluation included)", "",
              f"{'final':<11} {'E300':>6} {'F300':>6} {'F600':>6}  (meV/atom, meV/A, meV/A)"]
    for name, tests in (("mace-torch", mace["tests"]), ("mlip", mlip["tests"])):
        lines.append(f"{name:<11} " + " ".join(f"{v:>6.2f}" for v in _three(tests)))
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", type=Path, default=REPO / "configs" / "acac_fast.yaml", help="mlip config")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--mace-epochs", type=int, default=40)
    p.add_argument("--eval-every", type=int, default=1, help="mlip checkpoint interval (epochs)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=REPO / "runs" / "time_to_accuracy")
    p.add_argument("--mace-python", default=default_mace_python())
    p.add_argument("--no-ballast", action="store_true", help="no ballast after the first run ends")
    p.add_argument("--mlip-override", nargs="*", default=[], help="extra mlip-train KEY=VALUE (quick checks)")
    p.add_argument("--train-subset", type=int, default=None, help="first N training frames (quick checks)")
    p.add_argument("--test-subset", type=int, default=None, help="first N frames of each test file (quick checks)")
    p.add_argument("--target-e300", type=float, default=None, help="meV/atom (default: mace-torch's, this run)")
    p.add_argument("--target-f300", type=float, default=None, help="meV/A (default: mace-torch's, this run)")
    p.add_argument("--target-f600", type=float, default=None, help="meV/A (default: mace-torch's, this run)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if not (args.data / "train_300K.xyz").is_file():
        print(f"error: {args.data / 'train_300K.xyz'} not found (pass --data)", file=sys.stderr)
        return 2
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    train = slice_xyz(args.data / "train_300K.xyz", work / "train_subset.xyz", args.train_subset)
    tests = [slice_xyz(args.data / f"test_MD_{t}.xyz", work / f"test_MD_{t}.xyz", args.test_subset)
             for t in ("300K", "600K")]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit.strip()}, "
          f"{'ballast' if not args.no_ballast else 'no ballast'}", flush=True)
    summary = []
    for seed in args.seeds:
        t_start = time.time()
        run = run_seed(args, seed, train, tests, env)
        own = _three(run["mace"]["tests"])
        given = (args.target_e300, args.target_f300, args.target_f600)
        target = tuple(g if g is not None else o for g, o in zip(given, own))
        print(report(run, target), f"\n(seed {seed}: {time.time() - t_start:.0f} s with evaluation)\n", flush=True)
        hit = first_reaching(run["mlip"]["curve"], target)
        summary.append({**run, "target": target, "hit": hit})
    rows = [(r["seed"], r["hit"]["wall_s"] / r["mace"]["train_s"] if r["hit"] else None) for r in summary]
    print("summary, ratio mlip/mace-torch to the same-run target: " + ", ".join(
        f"seed {s}: {'%.3f' % x if x is not None else 'not reached'}" for s, x in rows))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
