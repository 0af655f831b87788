"""Learning-curve plot (PNG) from ``metrics.jsonl``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mlip.files import atomic_path


def _series(records: list[dict], split_key: str, metric: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in records:
        groups = r.get(split_key)
        if not groups:
            continue
        head = next(iter(groups.values()))
        value = head.get("all", {}).get(metric)
        if value is not None:
            xs.append(r["epoch"])
            ys.append(value)
    return xs, ys


def plot_learning_curves(metrics_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Plot train/valid loss and validation energy/force RMSE against epoch; write ``out_path`` atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ep = [r["epoch"] for r in records]
    axes[0].plot(ep, [r.get("train_loss") for r in records], label="train")
    ve = [(r["epoch"], r["valid_loss"]) for r in records if r.get("valid_loss") is not None]
    if ve:
        axes[0].plot(*zip(*ve), "o-", ms=3, label="valid")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    for ax, metric, label in ((axes[1], "energy_rmse_per_atom", "E RMSE (meV/atom)"),
                              (axes[2], "forces_rmse", "F RMSE (meV/A)")):
        xs, ys = _series(records, "valid", metric)
        if xs:
            ax.plot(xs, [1000 * y for y in ys], "o-", ms=3)
        ax.set_ylabel(label)
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.14, top=0.95, wspace=0.3)
    out = Path(out_path)
    try:
        with atomic_path(out, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return out
