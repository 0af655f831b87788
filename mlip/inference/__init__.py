"""Inference: everything needed to run a trained model, below every engine and command that runs one.

* :mod:`~mlip.inference.potential` -- energy + forces (+ stress) of a batch, eager (:func:`evaluate`) or
  ``torch.compile``'d (:func:`compile_model`, :class:`CompiledPotential`).
* :mod:`~mlip.inference.frames` -- the predict-over-frames engine (:func:`predict_chunks`,
  :func:`frame_chunks`, :func:`split_frames`) used by evaluation, uncertainty, fidelity and analysis.
* :mod:`~mlip.inference.prepare` -- :func:`prepare_model`: load or copy, cast, convert the backend, freeze.
* :mod:`~mlip.inference.checks` -- :func:`check_cell`, :func:`check_elements`: bad structures refused early.

The ASE calculator (:mod:`mlip.calculator`) and the engines of :mod:`mlip.integrations` build on these.
"""

from mlip.inference.checks import DEFAULT_MAX_IMAGES, check_cell, check_elements, perpendicular_widths
from mlip.inference.frames import ATOM_OUTPUTS, FrameChunk, frame_chunks, frame_configurations, predict_chunks, split_frames
from mlip.inference.potential import (
    EDGE_DIMS, NODE_KEYS, CompiledPotential, compile_model, compiler_backend, energy_forces_stress, evaluate, fresh_code,
    inductor_decompositions, strain_batch,
)
from mlip.inference.prepare import BACKENDS, model_elements, prepare_model

__all__ = [
    "ATOM_OUTPUTS", "BACKENDS", "CompiledPotential", "DEFAULT_MAX_IMAGES", "EDGE_DIMS", "FrameChunk", "NODE_KEYS",
    "check_cell", "check_elements", "compile_model", "compiler_backend", "energy_forces_stress", "evaluate",
    "frame_chunks", "frame_configurations", "fresh_code", "inductor_decompositions", "model_elements",
    "perpendicular_widths", "predict_chunks", "prepare_model", "split_frames", "strain_batch",
]
