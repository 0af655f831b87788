"""Evaluation: per-frame errors of a model on a list of graphs, aggregated per head and per config_type.

Errors are prediction minus reference. Energy errors are per atom (eV/atom); force errors are over all
Cartesian components (eV/A); stress errors over all 9 components (eV/A^3). Frames without a label do
not count for that property (its MAE/RMSE is ``None`` when no frame of a group carries it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mlip.data import keys

ALL = "all"


@dataclass
class FrameErrors:
    """Per-frame error sums collected during evaluation (numpy, float64)."""

    head: list[str] = field(default_factory=list)
    config_type: list[str] = field(default_factory=list)
    n_atoms: list[int] = field(default_factory=list)
    energy: list[float] = field(default_factory=list)  # per-atom error, nan if unlabelled
    f_abs: list[float] = field(default_factory=list)
    f_sq: list[float] = field(default_factory=list)
    f_n: list[int] = field(default_factory=list)
    s_abs: list[float] = field(default_factory=list)
    s_sq: list[float] = field(default_factory=list)
    s_n: list[int] = field(default_factory=list)

    def add_batch(
        self,
        batch: dict[str, torch.Tensor],
        output: dict[str, torch.Tensor],
        heads: Sequence[str],
        config_types: Sequence[str],
    ) -> None:
        """Add the errors of one evaluated batch (``config_types`` of its frames, in order)."""
        ptr = batch[keys.PTR].detach().cpu().numpy()
        n = np.diff(ptr)
        B = len(n)
        head_idx = batch[keys.HEAD].detach().cpu().numpy()
        has_e = batch[keys.HAS_ENERGY].detach().cpu().numpy()
        has_f = batch[keys.HAS_FORCES].detach().cpu().numpy()
        has_s = batch[keys.HAS_STRESS].detach().cpu().numpy()
        e_err = (output[keys.ENERGY].detach() - batch[keys.ENERGY]).cpu().double().numpy() / n
        if keys.FORCES in output and output[keys.FORCES] is not None:
            f_err = (output[keys.FORCES].detach() - batch[keys.FORCES]).cpu().double().numpy()
        else:
            f_err = None
            has_f = np.zeros(B, dtype=bool)
        if keys.STRESS in output and output[keys.STRESS] is not None:
            s_err = (output[keys.STRESS].detach() - batch[keys.STRESS]).cpu().double().numpy().reshape(B, 9)
        else:
            s_err = None
            has_s = np.zeros(B, dtype=bool)
        for b in range(B):
            self.head.append(heads[int(head_idx[b])])
            self.config_type.append(str(config_types[b]))
            self.n_atoms.append(int(n[b]))
            self.energy.append(float(e_err[b]) if has_e[b] else math.nan)
            if has_f[b] and f_err is not None:
                fe = f_err[ptr[b] : ptr[b + 1]]
                self.f_abs.append(float(np.abs(fe).sum()))
                self.f_sq.append(float((fe * fe).sum()))
                self.f_n.append(int(fe.size))
            else:
                self.f_abs.append(0.0)
                self.f_sq.append(0.0)
                self.f_n.append(0)
            if has_s[b] and s_err is not None:
                se = s_err[b]
                self.s_abs.append(float(np.abs(se).sum()))
                self.s_sq.append(float((se * se).sum()))
                self.s_n.append(9)
            else:
                self.s_abs.append(0.0)
                self.s_sq.append(0.0)
                self.s_n.append(0)

    def summary(self, select: np.ndarray | None = None) -> dict[str, Any]:
        """MAE/RMSE of energy per atom, forces and stress over the selected frames (None if unlabelled)."""
        sel = np.ones(len(self.head), dtype=bool) if select is None else select
        e = np.asarray(self.energy, dtype=float)[sel]
        e = e[~np.isnan(e)]
        out: dict[str, Any] = {"n_configs": int(sel.sum())}
        out["energy_mae_per_atom"] = float(np.abs(e).mean()) if e.size else None
        out["energy_rmse_per_atom"] = float(np.sqrt((e * e).mean())) if e.size else None
        for key, a, s, c in (("forces", self.f_abs, self.f_sq, self.f_n), ("stress", self.s_abs, self.s_sq, self.s_n)):
            count = float(np.asarray(c, dtype=float)[sel].sum())
            if count > 0:
                out[f"{key}_mae"] = float(np.asarray(a)[sel].sum() / count)
                out[f"{key}_rmse"] = float(math.sqrt(np.asarray(s)[sel].sum() / count))
            else:
                out[f"{key}_mae"] = None
                out[f"{key}_rmse"] = None
        return out

    def grouped(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{head: {config_type or "all": summary}}``; with more than one head also ``{"all": {"all": ...}}``."""
        heads = np.asarray(self.head, dtype=object)
        cts = np.asarray(self.config_type, dtype=object)
        result: dict[str, dict[str, dict[str, Any]]] = {}
        for h in dict.fromkeys(self.head):
            in_head = heads == h
            groups = {ALL: self.summary(in_head)}
            types = list(dict.fromkeys(cts[in_head].tolist()))
            if len(types) > 1:
                for ct in types:
                    groups[ct] = self.summary(in_head & (cts == ct))
            result[h] = groups
        if len(result) > 1:
            result[ALL] = {ALL: self.summary()}
        return result


def _fmt(value: float | None, scale: float) -> str:
    return "-" if value is None else f"{value * scale:.2f}"


def format_table(grouped: dict[str, dict[str, dict[str, Any]]], title: str = "") -> str:
    """Text table (meV units) of :meth:`FrameErrors.grouped`."""
    cols = [
        ("E MAE", "energy_mae_per_atom"),
        ("E RMSE", "energy_rmse_per_atom"),
        ("F MAE", "forces_mae"),
        ("F RMSE", "forces_rmse"),
        ("S MAE", "stress_mae"),
        ("S RMSE", "stress_rmse"),
    ]
    header = f"{'head':<12} {'config_type':<18} {'n':>6} " + " ".join(f"{c:>9}" for c, _ in cols)
    units = f"{'':<12} {'':<18} {'':>6} " + " ".join(
        f"{u:>9}" for u in ("meV/at", "meV/at", "meV/A", "meV/A", "meV/A3", "meV/A3")
    )
    lines = [title] if title else []
    lines += [header, units, "-" * len(header)]
    for head, groups in grouped.items():
        for ct, s in groups.items():
            row = f"{head[:12]:<12} {ct[:18]:<18} {s['n_configs']:>6} "
            row += " ".join(f"{_fmt(s[k], 1000.0):>9}" for _, k in cols)
            lines.append(row)
    return "\n".join(lines)


def evaluate(
    model: torch.nn.Module,
    batches: Callable[[], Iterator[tuple[dict[str, torch.Tensor], Sequence[str]]]],
    heads: Sequence[str],
    compute_stress: bool,
    loss_fn: Callable[..., Any] | None = None,
    device: torch.device | str = "cpu",
    on_output: Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor]], None] | None = None,
) -> tuple[FrameErrors, float | None]:
    """Run ``model`` over ``batches()`` (yielding ``(batch, config_types)``); return errors and the mean loss.

    The loss is averaged over batches weighted by their number of frames. ``on_output(batch, output)`` is
    called for every batch (predictions writer).
    """
    errors = FrameErrors()
    total, frames = 0.0, 0
    was_training = model.training
    model.eval()
    for batch, config_types in batches():
        batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        with torch.enable_grad():
            out = model(batch, compute_forces=True, compute_stress=compute_stress, training=False)
        n_frames = int(batch[keys.PTR].numel() - 1)
        if loss_fn is not None:
            with torch.no_grad():
                loss, _ = loss_fn(batch, {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in out.items()})
            total += float(loss) * n_frames
        frames += n_frames
        errors.add_batch(batch, out, heads, config_types)
        if on_output is not None:
            on_output(batch, out)
    model.train(was_training)
    return errors, (total / frames if loss_fn is not None and frames else None)
