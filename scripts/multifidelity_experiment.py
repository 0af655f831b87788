"""Multi-fidelity experiment on acetylacetone (docs/multifidelity.md): DFT target + GFN2-xTB second level.

Setting: 50 DFT frames (first 50 of acac/train_300K) + all 500 GFN2-xTB frames of acac_gfn2/train_600K;
evaluated on DFT acac/test_MD_600K (first ``--test-frames`` frames). Runs, all with the same small
architecture and number of epochs:

1. dft_only        50 DFT frames
2. naive_merge     DFT + raw GFN2 energies in one head
3. icea_merge      DFT + GFN2 aligned by ICEA (tea: scale 1), one head
4. tea_merge       DFT + GFN2 aligned by TEA with a fitted on the 50 pairs (DFT frames vs the same
                   geometries in acac_gfn2/train_300K), one head
5. two_head        heads dft (50 DFT) and xtb (500 GFN2, raw), dft head evaluated
6. ft_replay       pretrain on GFN2 (500 frames), fine-tune on DFT with multi-head replay
7. ft_naive        the same without replay; forgetting: errors on acac_gfn2/test_MD_600K

Run from the repository root:
    OMP_NUM_THREADS=1 python scripts/multifidelity_experiment.py --epochs 30 --out mf_runs
Writes ``<out>/results.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from mlip.config import config_from_dict
from mlip.data.io import read_configurations
from mlip.io.model_file import load_model
from mlip.train.evaluation import predict_configurations
from mlip.train.run import train

MODEL = {
    "hidden_irreps": "16x0e + 16x1o", "max_ell": 2, "correlation": 2, "num_interactions": 2,
    "r_max": 4.5, "num_bessel": 8, "radial_mlp": [32, 32], "mlp_irreps": "16x0e",
}


def base_config(out: Path, name: str, epochs: int, seed: int) -> dict[str, Any]:
    return {
        "model": dict(MODEL),
        "loss": {"type": "mse", "energy_weight": 1.0, "forces_weight": 100.0},
        "schedule": {"name": "plateau", "factor": 0.8, "patience": 5},
        "ema": {"use": True, "decay": 0.99},
        "train": {"max_epochs": epochs, "batch_size": 5, "valid_batch_size": 20, "lr": 0.01,
                  "progress": False, "plot": False},
        "checkpoint": {"interval": epochs, "keep": 1},
        "output_dir": str(out / name), "device": "cpu", "dtype": "float64", "seed": seed,
    }


def evaluate(model_path: Path, data: Path, n: int, head: str) -> dict[str, float]:
    model = load_model(model_path)
    configs = read_configurations(str(data), head=head, index=f":{n}")
    errors, _ = predict_configurations(model, configs, 20, "cpu")
    s = errors.summary()
    return {"energy_rmse_meV_atom": 1000 * s["energy_rmse_per_atom"], "forces_rmse_meV_A": 1000 * s["forces_rmse"],
            "n": len(configs)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", default="../shared/data")
    p.add_argument("--out", default="mf_runs")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--pretrain-epochs", type=int, default=None, help="xTB pretraining epochs (default --epochs)")
    p.add_argument("--test-frames", type=int, default=200)
    p.add_argument("--n-dft", type=int, default=50)
    p.add_argument("--replay-ratio", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--only", nargs="*", default=None, help="run only these (names above)")
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    shared, out = Path(args.shared), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dft_iso, gfn_iso = str(shared / "acac/isolated_atoms.xyz"), str(shared / "acac_gfn2/isolated_atoms.xyz")
    n = args.n_dft
    # the DFT subset as a file (the trainer reads whole files)
    from ase.io import read, write

    dft_file = out / f"dft_{n}.xyz"
    write(dft_file, read(shared / "acac/train_300K.xyz", index=f":{n}"), format="extxyz")
    gfn_train = str(shared / "acac_gfn2/train_600K.xyz")
    pairs = [f"{shared / 'acac_gfn2/train_300K.xyz'}@:{n}", f"{shared / 'acac/train_300K.xyz'}@:{n}"]
    dft_test, xtb_test = shared / "acac/test_MD_600K.xyz", shared / "acac_gfn2/test_MD_600K.xyz"
    E, S = args.epochs, args.seed
    PE = args.pretrain_epochs or E

    def dft_head(**extra: Any) -> dict[str, Any]:
        return {"train": [str(dft_file)], "e0s": "isolated", "isolated_atoms": dft_iso, **extra}

    def merged(tea: dict[str, Any] | None) -> dict[str, Any]:
        gfn = {"train": [gfn_train], "head": "dft"}
        if tea is not None:
            gfn["tea"] = {"source_atoms": gfn_iso, "target_atoms": dft_iso, **tea}
        return {"heads": {"dft": dft_head(), "gfn2": gfn}}

    runs: dict[str, tuple[dict[str, Any], str]] = {
        "dft_only": ({"heads": {"dft": dft_head()}}, "dft"),
        "naive_merge": (merged(None), "dft"),
        "icea_merge": (merged({"scale": 1.0}), "dft"),
        "tea_merge": (merged({"pairs": pairs}), "dft"),
        "two_head": ({"heads": {"dft": dft_head(),
                               "xtb": {"train": [gfn_train], "e0s": "isolated", "isolated_atoms": gfn_iso}}}, "dft"),
    }
    results: dict[str, Any] = {}
    res_path = out / "results.json"
    if res_path.exists():
        results = json.loads(res_path.read_text())
    wanted = args.only or list(runs) + ["ft_replay", "ft_naive"]

    def record(name: str, model_path: Path, head: str, t0: float, extra: dict[str, Any] | None = None) -> None:
        r = {"dft": evaluate(model_path, dft_test, args.test_frames, head), "time_s": time.time() - t0}
        r.update(extra or {})
        results[name] = r
        res_path.write_text(json.dumps(results, indent=1))
        print(name, json.dumps(r), flush=True)

    for name, (data, head) in runs.items():
        if name not in wanted:
            continue
        t0 = time.time()
        cfg = base_config(out, name, E, S)
        cfg["data"] = data
        extra = {}
        path = train(config_from_dict(cfg))
        if name == "tea_merge":
            from mlip.fidelity.tea import resolve_tea

            extra["a"] = resolve_tea(gfn_iso, dft_iso, pairs=tuple(pairs))[2]
        record(name, path, head, t0, extra)

    if {"ft_replay", "ft_naive"} & set(wanted):
        pre = out / "xtb_pretrain" / "model.pt"
        t0 = time.time()
        if not pre.exists():
            cfg = base_config(out, "xtb_pretrain", PE, S)
            cfg["data"] = {"heads": {"xtb": {"train": [gfn_train], "e0s": "isolated", "isolated_atoms": gfn_iso}}}
            train(config_from_dict(cfg))
        results["xtb_pretrain"] = {"xtb": evaluate(pre, xtb_test, args.test_frames, "xtb"), "time_s": time.time() - t0}
        for name, mode in (("ft_replay", "multihead_replay"), ("ft_naive", "naive")):
            if name not in wanted:
                continue
            t0 = time.time()
            cfg = base_config(out, name, E, S)
            cfg["train"]["lr"] = 0.005
            cfg["data"] = {"heads": {"dft": {"train": [str(dft_file)]}}}
            ft: dict[str, Any] = {"from_model": str(pre), "mode": mode, "pretrained_head": "xtb"}
            if mode == "multihead_replay":
                ft["replay"] = {"data": [gfn_train], "selection": "fps", "ratio": args.replay_ratio, "weight": 1.0}
            cfg["finetune"] = ft
            path = train(config_from_dict(cfg))
            xtb_head = "xtb" if mode == "multihead_replay" else "dft"
            record(name, path, "dft", t0, {"xtb": evaluate(path, xtb_test, args.test_frames, xtb_head)})
    print_table(results)


def print_table(results: dict[str, Any]) -> None:
    print("| run | DFT E RMSE (meV/atom) | DFT F RMSE (meV/A) | xTB E RMSE (meV/atom) | xTB F RMSE (meV/A) | time (s) |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        d, x = r.get("dft", {}), r.get("xtb", {})
        f = lambda v: f"{v:.1f}" if isinstance(v, (int, float)) else "-"  # noqa: E731
        print(f"| {name} | {f(d.get('energy_rmse_meV_atom'))} | {f(d.get('forces_rmse_meV_A'))} | "
              f"{f(x.get('energy_rmse_meV_atom'))} | {f(x.get('forces_rmse_meV_A'))} | {r.get('time_s', 0):.0f} |")


if __name__ == "__main__":
    main()
