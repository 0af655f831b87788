#!/usr/bin/env python
"""Reference training benchmark: mlip (configs/acac.yaml) and optionally mace-torch 0.3.16, side by side.

Both frameworks train the same model on the same data (acac 300 K, 10 % validation, seed 1, E0s from
isolated atoms, 32x0e+32x1o, max_ell 3, correlation 3, 2 interactions (residual, the first one plain as
mace-torch's MACE model builds it), r_max 5, 8 Bessel, p=5,
radial MLP [64,64,64], readout MLP 16x0e, float64, batch 5, AMSGrad lr 0.01, EMA 0.99, weighted MSE
(energy 1, forces 100), CPU). Each training run is a separate process; the script reports

- time per epoch (training + validation; mean over epochs 2.. so that start-up is excluded),
- peak resident memory of the training process (``os.wait4`` rusage, includes start-up and data),
- test RMSE of the energy (per structure and per atom) and forces on each test file, computed here from
  the predictions that each framework's own evaluation command writes.

Run from the repository root, on a quiet machine:

    python scripts/benchmark_train.py --frameworks mlip,mace                    # the full benchmark (40 epochs)
    python scripts/benchmark_train.py --epochs 1 --train-subset 50 --test-subset 20   # a quick check

Ratios (mlip / mace) are printed when both ran; a JSON summary is written with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_inference_common import default_mace_python  # noqa: E402  (scripts are not a package)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "acac"
MACE_PYTHON = default_mace_python()


def slice_xyz(src: Path, dst: Path, n: int | None) -> Path:
    """The first ``n`` frames of an extended XYZ file (plain text), or ``src`` itself when n is None."""
    if n is None:
        return src
    lines = src.read_text().splitlines(keepends=True)
    out, i, frame = [], 0, 0
    while i < len(lines) and frame < n:
        count = int(lines[i].split()[0])
        out.extend(lines[i: i + count + 2])
        i += count + 2
        frame += 1
    dst.write_text("".join(out))
    return dst


def run_measured(cmd: list[str], env: dict[str, str], log_path: Path) -> tuple[int, float, float]:
    """Run ``cmd``; return (exit status, wall seconds, peak RSS in MB of that process)."""
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, usage.ru_maxrss / 1024.0  # Linux: kB


def test_errors(reference: Path, predictions: Path, prefix: str) -> dict[str, float]:
    """RMSE of energy (meV/structure, meV/atom) and forces (meV/A), predictions paired by frame index."""
    import ase.io

    refs = ase.io.read(reference, ":")
    preds = ase.io.read(predictions, ":")
    if len(refs) != len(preds):
        raise RuntimeError(f"{predictions}: {len(preds)} frames, reference has {len(refs)}")
    de, dea, df = [], [], []
    for r, p in zip(refs, preds):
        e_pred = float(p.info[f"{prefix}energy"])
        f_pred = np.asarray(p.arrays[f"{prefix}forces"])
        e_ref = float(r.get_potential_energy())
        de.append(e_pred - e_ref)
        dea.append((e_pred - e_ref) / len(r))
        df.append((f_pred - r.get_forces()).ravel())
    de, dea, dfa = np.array(de), np.array(dea), np.concatenate(df)
    return {
        "energy_rmse_meV": 1000 * float(np.sqrt(np.mean(de**2))),
        "energy_rmse_meV_per_atom": 1000 * float(np.sqrt(np.mean(dea**2))),
        "forces_rmse_meV_per_A": 1000 * float(np.sqrt(np.mean(dfa**2))),
        "n_frames": len(refs),
    }


def isolated_e0s(path: Path) -> dict[int, float]:
    import ase.io

    return {int(a.numbers[0]): float(a.get_potential_energy()) for a in ase.io.read(path, ":") if len(a) == 1}


# ---------------------------------------------------------------------------------------------- mlip
def bench_mlip(args: argparse.Namespace, train: Path, tests: list[Path], work: Path, env: dict[str, str]) -> dict:
    out = work / "mlip_run"
    cmd = [
        sys.executable, "-m", "mlip.cli.train", "--config", str(args.config),
        f"data.train={train}", f"data.test=[{','.join(str(t) for t in tests)}]",
        f"data.isolated_atoms={args.data / 'isolated_atoms.xyz'}",
        f"train.max_epochs={args.epochs}", f"output_dir={out}", "train.progress=false", "train.plot=false",
        "device=cpu", f"checkpoint.interval={max(args.epochs, 1)}",
    ]
    if out.exists():
        import shutil

        shutil.rmtree(out)
    rc, wall, rss = run_measured(cmd, env, work / "mlip_train.log")
    if rc != 0:
        raise RuntimeError(f"mlip training failed (exit {rc}); see {work / 'mlip_train.log'}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    times = [r["epoch_time_s"] for r in records]
    result = {"framework": "mlip", "wall_s": wall, "peak_rss_MB": rss, "epoch_times_s": times, "tests": {}}
    for t in tests:
        pred = work / f"mlip_pred_{t.stem}.xyz"
        ev = subprocess.run(
            [sys.executable, "-m", "mlip.cli.eval", "--model", str(out / "model.pt"), "--data", str(t),
             "--output", str(pred), "--batch-size", "10", "--device", "cpu"],
            env=env, cwd=REPO, capture_output=True, text=True,
        )
        if ev.returncode != 0:
            raise RuntimeError(f"mlip-eval failed: {ev.stderr.strip()}")
        result["tests"][t.stem] = test_errors(t, pred, "MLIP_")
    return result


# ---------------------------------------------------------------------------------------------- mace
_EPOCH_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) INFO: (Initial|Epoch (\d+)):")


def _mace_epoch_times(log: Path) -> list[float]:
    """Seconds between consecutive evaluation lines of the mace log (one per epoch)."""
    stamps = []
    for line in log.read_text().splitlines():
        m = _EPOCH_LINE.match(line)
        if m:
            stamps.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp())
    return [b - a for a, b in zip(stamps, stamps[1:])]


def mace_command(args: argparse.Namespace, train: Path, work: Path) -> list[str]:
    """mace-torch's ``run_train`` command line of the reference recipe (seed ``args.seed``, default 1)."""
    mdir = work / "mace_run"
    mdir.mkdir(parents=True, exist_ok=True)
    e0s = isolated_e0s(args.data / "isolated_atoms.xyz")
    return [
        args.mace_python, "-m", "mace.cli.run_train",
        "--name", "acac", "--work_dir", str(mdir), "--seed", str(getattr(args, "seed", 1)),
        "--device", "cpu", "--default_dtype", "float64",
        "--train_file", str(train), "--valid_fraction", "0.1",
        "--energy_key", "energy", "--forces_key", "forces", "--E0s", repr(e0s),
        "--model", "MACE", "--hidden_irreps", "32x0e + 32x1o", "--max_ell", "3", "--correlation", "3",
        "--num_interactions", "2", "--r_max", "5.0", "--num_radial_basis", "8", "--num_cutoff_basis", "5",
        "--radial_MLP", "[64, 64, 64]", "--MLP_irreps", "16x0e",
        "--interaction", "RealAgnosticResidualInteractionBlock",
        "--interaction_first", "RealAgnosticInteractionBlock",  # what `--model MACE` uses in any case
        "--scaling", "rms_forces_scaling",
        "--batch_size", "5", "--valid_batch_size", "10", "--lr", "0.01", "--amsgrad", "--ema", "--ema_decay", "0.99",
        "--loss", "weighted", "--energy_weight", "1.0", "--forces_weight", "100.0",
        "--max_num_epochs", str(args.epochs), "--eval_interval", "1", "--error_table", "PerAtomRMSE",
        "--save_cpu",
    ]


def mace_results(args: argparse.Namespace, tests: list[Path], work: Path, env: dict[str, str], wall: float,
                 rss: float) -> dict:
    """Epoch times from mace-torch's log and its final model's test errors (``mace.cli.eval_configs``)."""
    mdir = work / "mace_run"
    logs = sorted((mdir / "logs").glob("*.log")) if (mdir / "logs").is_dir() else []
    times = _mace_epoch_times(logs[-1]) if logs else []
    model = mdir / "acac.model"
    result = {"framework": "mace-torch", "wall_s": wall, "peak_rss_MB": rss, "epoch_times_s": times, "tests": {}}
    for t in tests:
        pred = work / f"mace_pred_{t.stem}.xyz"
        ev = subprocess.run(
            [args.mace_python, "-m", "mace.cli.eval_configs", "--configs", str(t), "--model", str(model),
             "--output", str(pred), "--default_dtype", "float64", "--device", "cpu", "--batch_size", "10"],
            env=env, cwd=REPO, capture_output=True, text=True,
        )
        if ev.returncode != 0:
            raise RuntimeError(f"mace eval_configs failed: {ev.stderr.strip()[-2000:]}")
        result["tests"][t.stem] = test_errors(t, pred, "MACE_")
    return result


def bench_mace(args: argparse.Namespace, train: Path, tests: list[Path], work: Path, env: dict[str, str]) -> dict:
    """mace-torch's reference run alone, then its test errors."""
    rc, wall, rss = run_measured(mace_command(args, train, work), env, work / "mace_train.log")
    if rc != 0:
        raise RuntimeError(f"mace training failed (exit {rc}); see {work / 'mace_train.log'}")
    return mace_results(args, tests, work, env, wall, rss)


# ---------------------------------------------------------------------------------------------- report
def _per_epoch(times: list[float]) -> float:
    use = times[1:] if len(times) > 1 else times
    return float(np.mean(use)) if use else float("nan")


def format_report(results: list[dict]) -> str:
    tests = list(results[0]["tests"])
    head = f"{'framework':<11} {'s/epoch':>8} {'peak RSS MB':>11}"
    for t in tests:
        head += f" | {t}: {'E meV':>7} {'E meV/at':>8} {'F meV/A':>8}"
    lines = [head, "-" * len(head)]
    for r in results:
        row = f"{r['framework']:<11} {_per_epoch(r['epoch_times_s']):>8.2f} {r['peak_rss_MB']:>11.0f}"
        for t in tests:
            e = r["tests"][t]
            row += f" | {' ' * len(t)}  {e['energy_rmse_meV']:>7.1f} {e['energy_rmse_meV_per_atom']:>8.2f} " \
                   f"{e['forces_rmse_meV_per_A']:>8.1f}"
        lines.append(row)
    if len(results) == 2:
        a, b = results
        lines.append("")
        lines.append(f"ratios {a['framework']}/{b['framework']}: time/epoch "
                     f"{_per_epoch(a['epoch_times_s']) / _per_epoch(b['epoch_times_s']):.2f}, "
                     f"peak RSS {a['peak_rss_MB'] / b['peak_rss_MB']:.2f}, " + ", ".join(
                         f"{t} F RMSE {a['tests'][t]['forces_rmse_meV_per_A'] / b['tests'][t]['forces_rmse_meV_per_A']:.3f}"
                         for t in tests))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frameworks", default="mlip", help="comma-separated: mlip, mace (default: mlip)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with train_300K.xyz, test_MD_*.xyz, isolated_atoms.xyz")
    p.add_argument("--config", type=Path, default=REPO / "configs" / "acac.yaml")
    p.add_argument("--train-subset", type=int, default=None, help="use only the first N training frames")
    p.add_argument("--test-subset", type=int, default=None, help="use only the first N frames of each test file")
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the runs (default: inherited)")
    p.add_argument("--workdir", type=Path, default=REPO / "runs" / "benchmark")
    p.add_argument("--mace-python", default=MACE_PYTHON)
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    unknown = set(frameworks) - {"mlip", "mace"}
    if unknown:
        p.error(f"unknown framework(s): {', '.join(sorted(unknown))}")
    if not (args.data / "train_300K.xyz").is_file():
        print(f"error: {args.data / 'train_300K.xyz'} not found (pass --data)", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    work = args.workdir.resolve()
    train = slice_xyz(args.data / "train_300K.xyz", work / "train_subset.xyz", args.train_subset)
    tests = []
    for temperature in ("300K", "600K"):
        src = args.data / f"test_MD_{temperature}.xyz"
        tests.append(slice_xyz(src, work / src.name, args.test_subset))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    results = []
    for fw in frameworks:
        print(f"running {fw} ({args.epochs} epochs) ...", flush=True)
        results.append(bench_mlip(args, train, tests, work, env) if fw == "mlip" else bench_mace(args, train, tests, work, env))
    print(format_report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
