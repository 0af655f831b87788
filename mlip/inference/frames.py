"""Run a model over a list of structures: the one predict-over-frames engine.

Every command and API that evaluates a model on many frames outside training goes through here:
``mlip-eval`` (:mod:`mlip.train.evaluation`), uncertainty (:mod:`mlip.uncertainty.frames`, LLPR fitting),
descriptors and energies for replay/alignment (:mod:`mlip.fidelity.descriptors`), and edge energies
(:mod:`mlip.analysis.report`).

* :func:`frame_configurations` -- structures (ASE ``Atoms`` or :class:`~mlip.data.configuration.Configuration`)
  as configurations whose heads follow the one head rule (:func:`mlip.nn.heads.frame_head`).
* :func:`frame_chunks` -- those configurations built into graphs and collated ``batch_size`` frames at a
  time (memory: one chunk), in the model's dtype, on its device (or ``device``).
* :func:`predict_chunks` -- each chunk with the outputs of ``model(batch, ...)`` or any evaluator with the
  same call (an uncertainty potential).
* :func:`split_frames` -- batch outputs cut into one dict of numpy arrays per frame.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mlip.data import keys
from mlip.data.configuration import Configuration
from mlip.data.structures import as_configuration, structure_batches
from mlip.device import model_device, model_dtype
from mlip.nn.heads import frame_head, model_heads

__all__ = ["ATOM_OUTPUTS", "FrameChunk", "frame_chunks", "frame_configurations", "predict_chunks", "split_frames"]

ATOM_OUTPUTS: frozenset[str] = frozenset({
    keys.FORCES, keys.NODE_ENERGY, keys.NODE_FEATS, "forces_variance", "forces_uncertainty",
})
"""Output keys with one row per atom (``[N, ...]``); every other tensor output has one row per frame."""


@dataclass
class FrameChunk:
    """``batch_size`` consecutive frames: ``configs[k]`` is frame ``start + k``; ``batch`` their collated graphs."""

    start: int
    configs: list[Configuration]
    batch: dict[str, torch.Tensor]


def _own_head(structure: Any) -> str | None:
    """The head a structure names itself: a Configuration's ``head``, an Atoms' ``info['head']``, else None."""
    if isinstance(structure, Configuration):
        return structure.head
    head = (getattr(structure, "info", None) or {}).get("head")
    return None if head is None else str(head)


def _where(structure: Any, source: str, i: int) -> str:
    """How messages name frame ``i`` of ``source``: a Configuration read from a file by its file and frame
    there (``Configuration.source``; right for a ``path@slice`` selection too), else ``source: frame i``."""
    if source == "structure":
        return f"structure {i}"
    own = structure.source if isinstance(structure, Configuration) else ""
    if ":" in own:
        path, frame = own.rsplit(":", 1)
        return f"{path}: frame {frame}"
    return f"{source}: frame {i}"


def frame_configurations(
    model: torch.nn.Module, structures: Iterable[Any], head: str | None = None, key: str = "--head",
    source: str = "structure",
) -> Iterator[Configuration]:
    """Configurations of ``structures`` (labels kept for Configurations, dropped for Atoms), heads resolved.

    ``head`` overrides every frame's own head; ``key`` is the setting that chooses it and ``source`` names
    the frames in messages (``"data/x.xyz"`` gives ``"data/x.xyz: frame 3"``). Lazy: one at a time.
    """
    heads, default = model_heads(model)
    for i, s in enumerate(structures):
        yield as_configuration(s, frame_head(heads, _own_head(s), head, default, key=key, where=_where(s, source, i)))


def frame_chunks(
    model: torch.nn.Module,
    structures: Iterable[Any],
    head: str | None = None,
    batch_size: int = 16,
    device: torch.device | str | None = None,
    key: str = "--head",
    source: str = "structure",
) -> Iterator[FrameChunk]:
    """Chunks of ``batch_size`` frames, graphs at the model's ``r_max``, floats in the model's dtype.

    ``device`` defaults to the model's. ``structures`` may be any iterable (read lazily).
    """
    heads, _ = model_heads(model)
    dev = model_device(model) if device is None else torch.device(device)
    configs = frame_configurations(model, structures, head, key, source)
    for start, chunk, batch in structure_batches(configs, float(model.r_max), heads, batch_size, model_dtype(model), dev):
        yield FrameChunk(start=start, configs=list(chunk), batch=batch)


def predict_chunks(
    model: torch.nn.Module,
    structures: Iterable[Any],
    head: str | None = None,
    batch_size: int = 16,
    device: torch.device | str | None = None,
    call: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
    compute_forces: bool = True,
    compute_stress: bool = False,
    key: str = "--head",
    source: str = "structure",
) -> Iterator[tuple[FrameChunk, dict[str, torch.Tensor]]]:
    """Each chunk with its outputs.

    ``call(batch) -> outputs`` defaults to the model's forward (``training=False``, forces and stress as
    asked, without autograd when neither is asked). Pass ``call`` for another evaluator of the same model
    (for example an LLPR or committee potential); the model then only fixes heads, ``r_max``, dtype and device.
    Stress is only asked of chunks holding a periodic frame.
    """
    was_training = model.training
    model.eval()
    try:
        for chunk in frame_chunks(model, structures, head, batch_size, device, key, source):
            if call is not None:
                out = call(chunk.batch)
            else:
                stress = compute_stress and bool(chunk.batch[keys.PBC].any())
                with torch.set_grad_enabled(compute_forces or stress):
                    out = model(chunk.batch, compute_forces=compute_forces, compute_stress=stress, training=False)
            yield chunk, out
    finally:
        model.train(was_training)


def split_frames(
    batch: dict[str, torch.Tensor], out: dict[str, torch.Tensor], wanted: Sequence[str]
) -> list[dict[str, Any]]:
    """One dict per frame of the ``wanted`` outputs present in ``out``, as float64 numpy.

    Per-atom outputs (:data:`ATOM_OUTPUTS`) are cut at the batch's ``ptr``; per-frame ones are indexed by
    frame (``energy`` becomes a float, ``stress`` a [3, 3] array).
    """
    ptr = batch[keys.PTR].tolist()
    frames: list[dict[str, Any]] = [{} for _ in range(len(ptr) - 1)]
    for name in wanted:
        value = out.get(name)
        if not isinstance(value, torch.Tensor):
            continue
        value = value.detach().cpu().double()
        for b, (lo, hi) in enumerate(itertools.pairwise(ptr)):
            row = value[lo:hi] if name in ATOM_OUTPUTS else value[b]
            frames[b][name] = float(row) if row.ndim == 0 else row.numpy()
    return frames

