"""Evaluate a trained model on a labelled file: error table, JSON metrics, predictions file (``mlip-eval``).

Predictions are written as extended XYZ with ``MLIP_energy`` (info, eV), ``MLIP_forces`` (per-atom
array, eV/A) and, for periodic frames, ``MLIP_stress`` (info, 3x3 flattened row-major, eV/A^3, ASE sign);
with ``node_energies`` also ``MLIP_node_energy`` (per-atom array, eV: E0 + interaction energy of each atom,
summing to ``MLIP_energy``). The prefix ``MLIP_`` is ``info_prefix`` (mace_eval_configs' ``--info_prefix``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mlip.data import keys
from mlip.data.configuration import Configuration
from mlip.data.io import read_configurations, split_selection
from mlip.errors import DataError
from mlip.files import atomic_path, atomic_write_text
from mlip.inference import predict_chunks, split_frames
from mlip.nn.heads import model_heads
from mlip.train.metrics import ALL, FrameErrors, format_table

JSON_KEYS = (
    "energy_rmse_per_atom", "energy_mae_per_atom", "forces_rmse", "forces_mae", "stress_rmse", "stress_mae",
)


def predict_configurations(
    model: torch.nn.Module,
    configs: Sequence[Configuration],
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    head: str | None = None,
    source: str = "structure",
) -> tuple[FrameErrors, list[dict[str, np.ndarray]]]:
    """Errors and per-frame predictions (``energy`` float, ``forces`` [N,3], ``stress`` [3,3] or None,
    ``node_energy`` [N], eV), through the one engine (:func:`mlip.inference.predict_chunks`).

    Heads follow :func:`mlip.nn.heads.frame_head`: ``head`` for every frame, else each frame's own, else
    the model's default. ``source`` names the frames in error messages (the file they came from).
    """
    heads, _ = model_heads(model)
    errors = FrameErrors()
    preds: list[dict[str, Any]] = []
    wanted = (keys.ENERGY, keys.FORCES, keys.NODE_ENERGY, keys.STRESS)
    for chunk, out in predict_chunks(model, configs, head, batch_size, device, compute_stress=True, source=source):
        errors.add_batch(chunk.batch, out, heads, [c.config_type for c in chunk.configs])
        for frame, config in zip(split_frames(chunk.batch, out, wanted), chunk.configs):
            frame.setdefault(keys.STRESS, None)
            if not np.any(config.pbc):
                frame[keys.STRESS] = None
            preds.append(frame)
    return errors, preds


def write_predictions(path: str | os.PathLike, source: str, configs: Sequence[Configuration],
                      preds: Sequence[dict[str, Any]], info_prefix: str = "MLIP_", node_energies: bool = False,
                      index: str = ":") -> None:
    """Write the frames ``index`` of ``source`` (all their original keys) plus ``<info_prefix>*`` predictions,
    atomically."""
    import ase.io
    from ase import Atoms

    try:
        frames = ase.io.read(source, index)
        frames = [frames] if isinstance(frames, Atoms) else list(frames)
    except Exception:  # noqa: BLE001 - fall back to the parsed configurations
        frames = []
    if len(frames) != len(configs):
        frames = [Atoms(numbers=c.numbers, positions=c.positions, cell=c.cell, pbc=c.pbc) for c in configs]
    for atoms, p in zip(frames, preds):
        atoms.info[f"{info_prefix}energy"] = p["energy"]
        atoms.arrays[f"{info_prefix}forces"] = p["forces"]
        if node_energies:
            atoms.arrays[f"{info_prefix}node_energy"] = p["node_energy"]
        if p["stress"] is not None:
            atoms.info[f"{info_prefix}stress"] = p["stress"].reshape(-1)
    with atomic_path(path, suffix=".xyz") as tmp:
        ase.io.write(tmp, frames, format="extxyz")


def evaluate_file(
    model: torch.nn.Module,
    data: str,
    head: str | None = None,
    batch_size: int = 16,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    output: str | None = None,
    json_path: str | None = None,
    device: torch.device | str = "cpu",
    log: Any = print,
    info_prefix: str = "MLIP_",
    node_energies: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``data`` (a file, or ``path@slice``: :func:`mlip.data.io.split_selection`); print
    the table; write predictions/JSON when asked; return the metrics.

    ``info_prefix`` and ``node_energies``: the prediction keys of ``output`` (see the module docstring)."""
    path, index = split_selection(data)
    configs = read_configurations(
        path, energy_key=energy_key, forces_key=forces_key, stress_key=stress_key,
        allowed_numbers=[int(z) for z in model.atomic_numbers], index=index,
    )
    if not configs:
        raise DataError(f"{data}: no frames")
    errors, preds = predict_configurations(model, configs, batch_size, device, head=head, source=str(data))
    grouped = errors.grouped()
    log(format_table(grouped, f"{data}: {len(configs)} frames"))
    summary = errors.summary()
    metrics = {k: summary[k] for k in JSON_KEYS}
    metrics["n_configs"] = len(configs)
    metrics["per_group"] = {h: {ct: s for ct, s in g.items()} for h, g in grouped.items() if h != ALL}
    if output:
        write_predictions(output, path, configs, preds, info_prefix, node_energies, index)
        log(f"predictions written to {output}")
    if json_path:
        atomic_write_text(json_path, json.dumps(metrics, indent=1))
        log(f"metrics written to {json_path}")
    return metrics
