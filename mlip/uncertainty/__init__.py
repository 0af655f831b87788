"""Uncertainty of mlip predictions: last-layer prediction rigidity (LLPR) and model committees.

Public face:

* :func:`fit_llpr`, :class:`LLPR`, :func:`load_llpr`, :func:`save_llpr_model`, :class:`LLPRPotential`
  (:mod:`mlip.uncertainty.llpr`); the math in :mod:`mlip.uncertainty.core`
  (:func:`predictive_variance`, :func:`difference_sigma`, :func:`calibrate`);
* :class:`Committee` (:mod:`mlip.uncertainty.committee`): mean and spread of several model files;
* :func:`energy_difference_uncertainty` for energy differences along a path (NEB-like use).

Both :class:`LLPR` and :class:`Committee` plug into :class:`mlip.calculator.MLIPCalculator` through its
``uncertainty=`` argument (an object with ``potential(model)``). See docs/uncertainty.md.
"""

from mlip.uncertainty.committee import Committee, CommitteePotential
from mlip.uncertainty.core import (
    Calibration,
    calibrate,
    difference_sigma,
    predictive_variance,
    scale_calibration,
)
from mlip.uncertainty.features import feature_dim, readout_weights
from mlip.uncertainty.frames import (
    annotate_file,
    energy_difference_uncertainty,
    load_potential,
    predict_frames,
    uncertainty_scores,
)
from mlip.uncertainty.llpr import (
    LLPR,
    HeadLLPR,
    LLPRPotential,
    fit_llpr,
    load_llpr,
    save_llpr_model,
)

__all__ = [
    "LLPR",
    "Calibration",
    "Committee",
    "CommitteePotential",
    "HeadLLPR",
    "LLPRPotential",
    "annotate_file",
    "calibrate",
    "difference_sigma",
    "energy_difference_uncertainty",
    "feature_dim",
    "fit_llpr",
    "load_llpr",
    "load_potential",
    "predict_frames",
    "predictive_variance",
    "readout_weights",
    "save_llpr_model",
    "scale_calibration",
    "uncertainty_scores",
]
