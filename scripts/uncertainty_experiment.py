#!/usr/bin/env python
"""The acac uncertainty experiment of docs/uncertainty.md: LLPR against a committee, then active learning.

Data (``--data``, default ../shared/data/acac): training frames ``train_300K[:50]``, validation
``train_300K[450:500]`` (never trained on), tests ``test_MD_300K`` and ``test_MD_600K`` (first
``--test-frames``), active-learning pool ``train_600K``.

Part A (calibration):
  * ``--committee`` models trained on the same 50 frames with seeds 1..M (mlip-train, ``configs/acac.yaml``
    with the overrides of ``--size`` and ``--epochs``); the seed-1 model gets LLPR (mlip-uncertainty fit:
    H0 on the 50 frames, alpha^2 and lambda on the validation frames, energies + forces);
  * the committee's spread is calibrated on the same validation frames (one factor, force components);
  * per test set: Spearman rank correlation between predicted and actual per-structure force RMSE,
    calibration curves (fraction of force-component and energy errors inside the central Gaussian interval
    of probability p, against p) with their miscalibration area (mean |observed - p| over p in 0.01..0.99),
    PNGs ``calibration_<set>.png`` and ``force_rmse_<set>.png``.
Part B (active learning, unless ``--skip-al``): scripts/active_learning.py for each of ``--arms``
  (``strategy[:pool factor]``: ``uncertainty`` = LLPR, ``committee`` = ``--committee`` models retrained each
  round, ``random``; default ``uncertainty random``), ``--rounds`` rounds of ``--per-round`` frames from the
  pool, for each seed; test_MD_600K force RMSE after each round; ``active_learning.png``.

Writes ``<out>/results.json`` and ``<out>/tables.md`` (Markdown tables; every number from this script).
Example (full scale, quiet machine)::

    OMP_NUM_THREADS=1 python scripts/uncertainty_experiment.py --out unc_runs --epochs 200 --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from active_learning import active_learning, cli, write_frames

ROOT = Path(__file__).resolve().parents[1]
SIZES = {
    "acac": [],  # the architecture of configs/acac.yaml (32x0e+32x1o, max_ell 3, correlation 3)
    "small": ["model.hidden_irreps=16x0e + 16x1o", "model.max_ell=2", "model.correlation=2",
              "model.radial_mlp=[32,32]"],
}
LEVELS = np.linspace(0.01, 0.99, 99)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (Pearson correlation of the ranks; ties broken by order)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def calibration_curve(errors: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Observed fraction of |e| <= k(p) sigma for each p in LEVELS, k(p) = Phi^-1((1 + p) / 2)."""
    z = np.abs(errors) / np.maximum(sigmas, 1e-300)
    ks = np.array([statistics.NormalDist().inv_cdf(0.5 + 0.5 * p) for p in LEVELS])
    return (z[None, :] <= ks[:, None]).mean(axis=1)


def miscalibration_area(observed: np.ndarray) -> float:
    return float(np.mean(np.abs(observed - LEVELS)))


def evaluate_set(potential: Any, frames: list, scale2: float = 1.0) -> dict[str, np.ndarray]:
    """Per-frame actual and predicted force RMSE, and per-term errors/sigmas (force components, energies)."""
    from mlip.uncertainty import predict_frames

    preds = predict_frames(potential, frames, batch_size=10)
    ref_f = [a.get_forces() for a in frames]
    ref_e = np.array([a.get_potential_energy() for a in frames])
    err_f = [p["forces"] - f for p, f in zip(preds, ref_f)]
    return {
        "actual_rmse": np.array([np.sqrt(np.mean(e**2)) for e in err_f]),
        "predicted_rmse": np.sqrt(scale2) * np.array([p["forces_rmse_uncertainty"] for p in preds]),
        "force_errors": np.concatenate([e.reshape(-1) for e in err_f]),
        "force_sigmas": np.sqrt(scale2) * np.concatenate([np.sqrt(p["forces_variance"]).reshape(-1) for p in preds]),
        "energy_errors": np.array([p["energy"] for p in preds]) - ref_e,
        "energy_sigmas": np.sqrt(scale2) * np.array([p["energy_uncertainty"] for p in preds]),
    }


def plot_set(name: str, results: dict[str, dict[str, np.ndarray]], out: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4.2), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="ideal")
    for method, r in results.items():
        for kind, style in (("force", "-"), ("energy", "--")):
            obs = calibration_curve(r[f"{kind}_errors"], r[f"{kind}_sigmas"])
            ax.plot(LEVELS, obs, style, label=f"{method} {kind} (area {miscalibration_area(obs):.3f})")
    ax.set_xlabel("expected fraction (Gaussian)")
    ax.set_ylabel("observed fraction within k sigma")
    ax.set_title(f"calibration, {name}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"calibration_{name}.png")
    fig = Figure(figsize=(5, 4.2), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    for method, r in results.items():
        rho = spearman(r["predicted_rmse"], r["actual_rmse"])
        ax.loglog(1e3 * r["predicted_rmse"], 1e3 * r["actual_rmse"], ".", ms=3, label=f"{method} (Spearman {rho:.2f})")
    lo, hi = ax.get_xlim()
    ax.plot([lo, hi], [lo, hi], "k:", lw=1)
    ax.set_xlabel("predicted force RMSE (meV/A)")
    ax.set_ylabel("actual force RMSE (meV/A)")
    ax.set_title(name)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"force_rmse_{name}.png")


def train(out: Path, train_file: Path, valid_file: Path, seed: int, args: argparse.Namespace) -> Path:
    run = out / f"model_seed{seed}"
    if not (run / "model.pt").is_file():
        cli("mlip-train", "--config", ROOT / "configs" / "acac.yaml", f"data.train={train_file}",
            f"data.valid={valid_file}", "data.test=[]", f"data.isolated_atoms={args.data / 'isolated_atoms.xyz'}",
            f"output_dir={run}", f"seed={seed}", f"train.max_epochs={args.epochs}", "train.progress=false",
            "train.plot=false", *SIZES[args.size])
    return run / "model.pt"


def part_a(args: argparse.Namespace, files: dict[str, Path]) -> dict[str, Any]:
    import ase.io
    import torch

    from mlip.uncertainty import load_potential, scale_calibration

    out = args.out
    models = [train(out, files["train"], files["valid"], seed, args) for seed in range(1, args.committee + 1)]
    llpr_file = out / "model_llpr.pt"
    cli("mlip-uncertainty", "fit", "--model", models[0], "--train", files["train"], "--valid", files["valid"],
        "-o", llpr_file)
    potentials = {"LLPR": load_potential(str(llpr_file), device="cpu"),
                  f"committee-{args.committee}": load_potential(str(models[0]), [str(m) for m in models[1:]], "cpu")}
    valid = ase.io.read(files["valid"], ":")
    cval = evaluate_set(potentials[f"committee-{args.committee}"], valid)
    scales = {"LLPR": 1.0, f"committee-{args.committee}": scale_calibration(
        torch.tensor(cval["force_errors"]), torch.tensor(cval["force_sigmas"]))}
    from mlip.uncertainty import load_llpr

    fitted = load_llpr(llpr_file).heads["Default"]
    summary: dict[str, Any] = {"committee_scale2": scales[f"committee-{args.committee}"], "sets": {},
                               "llpr_alpha2": fitted.alpha2, "llpr_reg": fitted.reg}
    for name in ("test_MD_300K", "test_MD_600K"):
        frames = ase.io.read(files[name], ":")
        res = {m: evaluate_set(p, frames, scales[m]) for m, p in potentials.items()}
        plot_set(name, res, out)
        summary["sets"][name] = {m: {
            "spearman_force_rmse": spearman(r["predicted_rmse"], r["actual_rmse"]),
            "miscalibration_area_forces": miscalibration_area(calibration_curve(r["force_errors"], r["force_sigmas"])),
            "miscalibration_area_energy": miscalibration_area(calibration_curve(r["energy_errors"], r["energy_sigmas"])),
            "force_rmse": float(np.sqrt(np.mean(r["force_errors"] ** 2))),
            "mean_predicted_force_rmse": float(np.mean(r["predicted_rmse"])),
            "n_frames": len(frames)} for m, r in res.items()}
    return summary


def parse_arm(arm: str) -> tuple[str, float]:
    """``strategy[:pool_factor]`` -> (strategy, pool factor); e.g. ``uncertainty:3``."""
    strategy, _, factor = arm.partition(":")
    return strategy, float(factor or 1)


def part_b(args: argparse.Namespace, files: dict[str, Path]) -> dict[str, Any]:
    """{"<arm>/<seed>": test_MD_600K force RMSE per round (eV/A), "picked/<arm>/<seed>": mean reference
    force RMS of the frames picked in each round (eV/A; what kind of frames an arm adds), "pool_force_rms"}.

    Round 0 (the same 50 frames and seed for every arm) is trained once per seed and copied to the other arms.
    """
    import shutil

    import ase.io

    pool_rms = np.array([np.sqrt(np.mean(a.get_forces() ** 2)) for a in ase.io.read(args.data / "train_600K.xyz", ":")])
    runs: dict[str, Any] = {"pool_force_rms": float(pool_rms.mean())}
    overrides = [f"data.isolated_atoms={args.data / 'isolated_atoms.xyz'}", f"train.max_epochs={args.epochs}",
                 *SIZES[args.size]]
    for seed in args.seeds:
        first: Path | None = None
        for arm in args.arms:
            strategy, factor = parse_arm(arm)
            out = args.out / f"al_{arm.replace(':', '_pf')}_seed{seed}"
            if first is not None and not (out / "round0" / "run").exists():
                shutil.copytree(first / "round0" / "run", out / "round0" / "run")
            records = active_learning(str(ROOT / "configs" / "acac.yaml"), str(files["train"]), str(files["valid"]),
                                      str(args.data / "train_600K.xyz"), [str(files["test_MD_600K"])], args.rounds,
                                      args.per_round, strategy, out, seed, overrides, factor, args.committee,
                                      args.force_samples)
            first = first or out
            runs[f"{arm}/{seed}"] = [r["test"]["test_MD_600K.xyz"]["forces_rmse"] for r in records]
            runs[f"picked/{arm}/{seed}"] = [float(pool_rms[r["picked_pool_indices"]].mean())
                                            for r in records if "picked_pool_indices" in r]
    return runs


def tables(a: dict[str, Any] | None, b: dict[str, Any] | None, args: argparse.Namespace) -> str:
    lines = [(f"Made by scripts/uncertainty_experiment.py ({args.size} model, {args.epochs} epochs, "
              f"{args.test_frames or 'all'} test frames per set, LLPR selection "
              f"{f'with {args.force_samples} force samples' if args.force_samples else 'exact'})."), ""]
    if a:
        lines += [("| test set | method | Spearman (pred. vs actual frame force RMSE) | miscal. area forces | "
                   "miscal. area energy | force RMSE meV/A | mean predicted meV/A |"), "|---|---|---|---|---|---|---|"]
        for name, methods in a["sets"].items():
            for m, s in methods.items():
                lines.append(f"| {name} | {m} | {s['spearman_force_rmse']:.3f} | {s['miscalibration_area_forces']:.3f} | "
                             f"{s['miscalibration_area_energy']:.3f} | {1e3 * s['force_rmse']:.1f} | "
                             f"{1e3 * s['mean_predicted_force_rmse']:.1f} |")
        lines += ["", (f"LLPR: alpha^2 = {a['llpr_alpha2']:.3g}, lambda = {a['llpr_reg']:.3g}; committee spread scale "
                       f"factor (variance, calibrated on the validation frames): {a['committee_scale2']:.3g}"), ""]
    if b:
        arms = [arm for arm in args.arms if arm != "random"]
        lines += ["| round | training frames | " + " | ".join(f"{arm}: test_MD_600K force RMSE meV/A" for arm in arms)
                  + " | random | " + " | ".join(f"{arm} - random" for arm in arms) + " |",
                  "|---|---|" + "---|" * (2 * len(arms) + 1)]
        sd = (lambda v: f" +- {statistics.stdev(v):.1f}" if len(v) > 1 else "")

        def paired(v: list[float], ref: list[float] | None) -> str:
            """Mean +- std over seeds of the per-seed difference (same round-0 model), and how many are lower."""
            if ref is None:
                return "-"
            d = [a - r for a, r in zip(v, ref)]
            return f"{np.mean(d):+.1f}{sd(d)} ({sum(x < 0 for x in d)}/{len(d)} lower)"

        for r in range(args.rounds + 1):
            values = {arm: [1e3 * b[f"{arm}/{s}"][r] for s in args.seeds] for arm in args.arms}
            base = np.mean(values["random"]) if "random" in values else float("nan")
            lines.append(f"| {r} | {50 + r * args.per_round} | "
                         + " | ".join(f"{np.mean(values[a]):.1f}{sd(values[a])}" for a in arms)
                         + (f" | {base:.1f}{sd(values['random'])} | " if "random" in values else " | - | ")
                         + " | ".join(paired(values[a], values.get("random")) for a in arms) + " |")
        lines += ["", (f"Seeds: {' '.join(map(str, args.seeds))} (mean +- sample std over seeds; the differences are "
                       "per seed, against random with the same seed and round-0 model). Arms: strategy[:pool factor] "
                       "of scripts/active_learning.py.")]
        for arm in args.arms:
            picked = [b[f"picked/{arm}/{s}"] for s in args.seeds]
            lines.append(f"Mean reference force RMS of the frames {arm} picked: {np.mean(picked):.3f} eV/A "
                         f"(pool train_600K: {b['pool_force_rms']:.3f} eV/A).")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "acac")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", choices=list(SIZES), default="acac")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--committee", type=int, default=4)
    parser.add_argument("--test-frames", type=int, default=0, help="first N frames of each test set (0: all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--arms", nargs="+", default=["uncertainty", "random"],
                        help="part B arms, strategy[:pool factor]: uncertainty (LLPR), committee (--committee "
                             "models per round), random; e.g. uncertainty:3")
    parser.add_argument("--force-samples", type=int, default=None,
                        help="part B: LLPR selection with mlip-select --force-samples K (default exact)")
    parser.add_argument("--skip-al", action="store_true")
    parser.add_argument("--skip-calibration", action="store_true")
    args = parser.parse_args()
    import ase.io

    args.out.mkdir(parents=True, exist_ok=True)
    files = {"train": args.out / "train50.xyz", "valid": args.out / "valid50.xyz"}
    frames = ase.io.read(args.data / "train_300K.xyz", ":")
    write_frames(files["train"], frames[:50])
    write_frames(files["valid"], frames[450:500])
    for name in ("test_MD_300K", "test_MD_600K"):
        files[name] = args.out / f"{name}.xyz"
        test = ase.io.read(args.data / f"{name}.xyz", f":{args.test_frames}" if args.test_frames else ":")
        write_frames(files[name], test)
    a = None if args.skip_calibration else part_a(args, files)
    b = None if args.skip_al else part_b(args, files)
    (args.out / "results.json").write_text(json.dumps({"calibration": a, "active_learning": b,
                                                       "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))
    text = tables(a, b, args)
    (args.out / "tables.md").write_text(text)
    print(text)
    if b:
        plot_al(b, args)


def plot_al(b: dict[str, Any], args: argparse.Namespace) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    x = [50 + r * args.per_round for r in range(args.rounds + 1)]
    colors = dict(zip(args.arms, ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown")))
    for k, (arm, color) in enumerate(colors.items()):
        values = 1e3 * np.array([b[f"{arm}/{seed}"] for seed in args.seeds])  # [seeds, rounds + 1]
        shifted = [v + 1.5 * (k - (len(colors) - 1) / 2) for v in x]  # error bars side by side
        for row in values:
            ax.plot(shifted, row, "-", color=color, alpha=0.25, lw=0.8)
        spread = values.std(axis=0, ddof=1) if len(values) > 1 else None
        ax.errorbar(shifted, values.mean(axis=0), yerr=spread, fmt="o-", color=color, capsize=3,
                    label=f"{arm} (mean of {len(values)} seeds)")
    ax.set_xlabel("training frames")
    ax.set_ylabel("test_MD_600K force RMSE (meV/A)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "active_learning.png")


if __name__ == "__main__":
    main()
