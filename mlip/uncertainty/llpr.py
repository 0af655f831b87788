"""Last-layer prediction rigidity (LLPR): fit on data, store in the model file, predict with uncertainty.

* :func:`fit_llpr` streams the training set in batches to accumulate ``H0 = sum_b f_b f_b^T`` per head
  (:mod:`mlip.uncertainty.features`), then calibrates ``alpha^2`` and ``lambda`` per head on the validation set
  (:func:`mlip.uncertainty.core.calibrate`) from energy errors and/or force-component errors; force variances
  are exact, ``sigma^2_a = alpha^2 g_a^T (H0 + lambda I)^-1 g_a`` with ``g_a = df/dr_a`` from P backward passes.
* :func:`save_llpr_model` writes an ordinary mlip model file (:mod:`mlip.io.model_file`) whose JSON metadata
  holds ``llpr``: per head ``gram`` (``H0``, P x P float64 as nested lists, exact round trip), ``alpha2``,
  ``reg``, the readout ``weights`` [P] it was fitted for, counts. Loading it (:func:`load_llpr`) parses JSON
  only; :func:`mlip.io.model_file.load_model` reads the same file as a plain model.
* :class:`LLPRPotential` evaluates a batch like :func:`mlip.inference.evaluate`, plus ``energy_uncertainty``
  [B] (eV, 1 sigma), ``forces_variance`` [N, 3] (eV^2/A^2), ``forces_uncertainty`` [N] (eV/A,
  ``sqrt`` of the sum of the three component variances: rotation invariant) and ``stress_uncertainty``
  [B, 3, 3] (eV/A^3, 1 sigma per component).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mlip.data import keys
from mlip.data.configuration import Configuration
from mlip.device import model_device, model_dtype
from mlip.errors import DataError, ModelFileError
from mlip.inference import frame_chunks
from mlip.uncertainty.core import calibrate, covariance_factor
from mlip.uncertainty.features import feature_dim, readout_weights
from mlip.uncertainty.predict import evaluate_with_features

FORMAT_VERSION = 1
CALIBRATE_ON = ("energy", "forces")


@dataclass
class HeadLLPR:
    """LLPR state of one head: ``gram`` H0 [P, P], readout ``weights`` [P] at fit time, ``alpha2``, ``reg``."""

    gram: torch.Tensor
    weights: torch.Tensor
    n_train: int
    alpha2: float = 1.0
    reg: float = 1e-8
    n_valid: int = 0
    calibrated_on: list[str] = field(default_factory=list)
    nll: float = math.nan

    def factor(self) -> torch.Tensor:
        """``L`` [P, P] with ``L L^T = alpha^2 (H0 + reg I)^-1``."""
        return covariance_factor(self.gram, self.alpha2, self.reg)


@dataclass
class LLPR:
    """Per-head LLPR state of one model (``heads`` in the model's head order).

    ``force_samples`` (not stored in files): ``None`` gives exact force/stress variances (P backward
    passes per evaluation); an integer K estimates them from K random directions ``L omega / sqrt(K)``,
    ``omega ~ N(0, I)`` (K backward passes, unbiased, relative noise about ``sqrt(2/K)``; seeded by
    ``sample_seed``, so repeated calls give the same estimate). Energy sigmas are always exact.
    """

    heads: dict[str, HeadLLPR]
    force_samples: int | None = None
    sample_seed: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable description (floats as Python floats: exact round trip)."""
        return {"format_version": FORMAT_VERSION, "heads": {
            name: {"gram": h.gram.to(torch.float64).tolist(), "weights": h.weights.to(torch.float64).tolist(),
                   "n_train": h.n_train, "alpha2": h.alpha2, "reg": h.reg, "n_valid": h.n_valid,
                   "calibrated_on": list(h.calibrated_on), "nll": None if math.isnan(h.nll) else h.nll}
            for name, h in self.heads.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "model file") -> LLPR:
        """Inverse of :meth:`to_json`; a malformed entry raises :class:`ModelFileError`."""
        try:
            if int(data.get("format_version", 0)) > FORMAT_VERSION:
                raise ModelFileError(f"{source}: llpr format version {data['format_version']} is newer than this mlip")
            heads = {}
            for name, h in data["heads"].items():
                gram = torch.tensor(h["gram"], dtype=torch.float64)
                weights = torch.tensor(h["weights"], dtype=torch.float64)
                if gram.dim() != 2 or gram.shape[0] != gram.shape[1] or weights.shape != (gram.shape[0],):
                    raise ModelFileError(f"{source}: llpr head '{name}': gram/weights have shapes "
                                         f"{tuple(gram.shape)}/{tuple(weights.shape)}")
                heads[name] = HeadLLPR(gram, weights, int(h["n_train"]), float(h["alpha2"]), float(h["reg"]),
                                       int(h.get("n_valid", 0)), list(h.get("calibrated_on", [])),
                                       math.nan if h.get("nll") is None else float(h["nll"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ModelFileError(f"{source}: malformed llpr entry ({err})") from None
        return cls(heads)

    def check(self, model: torch.nn.Module, source: str = "model") -> None:
        """Raise :class:`ModelFileError` unless ``model`` has these heads and the readout weights LLPR was fitted for."""
        w = readout_weights(model)
        unknown = sorted(set(self.heads) - set(model.heads))
        if unknown or not self.heads:
            raise ModelFileError(f"{source}: LLPR heads {unknown or '(none)'} do not match the model's heads {model.heads}")
        for k, name in enumerate(model.heads):
            if name not in self.heads:
                continue  # a head without training frames: using it raises (LLPRPotential)
            ref = self.heads[name].weights
            if ref.shape != w[k].shape or not torch.allclose(w[k], ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max())):
                raise ModelFileError(f"{source}: head '{name}': the readout weights differ from those LLPR was "
                                     "fitted for (the model was retrained?); run mlip-uncertainty fit again")

    def potential(self, model: torch.nn.Module) -> LLPRPotential:
        """An evaluator of ``model`` with LLPR uncertainties (the hook of :class:`mlip.calculator.MLIPCalculator`)."""
        return LLPRPotential(model, self, self.force_samples, self.sample_seed)


def iter_batches(
    model: torch.nn.Module, configs: Iterable[Configuration], batch_size: int, device: torch.device | str = "cpu"
) -> Iterator[dict[str, torch.Tensor]]:
    """Graphs built and collated ``batch_size`` at a time (memory: one batch of graphs), heads by the one
    rule (:func:`mlip.nn.heads.frame_head`): the engine of :func:`mlip.inference.frame_chunks`."""
    for chunk in frame_chunks(model, configs, batch_size=batch_size, device=device):
        yield chunk.batch


def accumulate_gram(
    model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``H0`` [H, P, P] (float64, CPU) and the number of structures per head [H], streamed over ``batches``."""
    num_heads, p = len(model.heads), feature_dim(model)
    gram = torch.zeros(num_heads, p, p, dtype=torch.float64)
    counts = torch.zeros(num_heads, dtype=torch.long)
    for batch in batches:
        out = evaluate_with_features(model, batch, compute_forces=False)
        f = out[keys.FEATURES].to(torch.float64).cpu()
        heads = batch[keys.HEAD].cpu()
        for h in heads.unique().tolist():
            fh = f[heads == h]
            gram[h] += fh.T @ fh
            counts[h] += fh.shape[0]
    return gram, counts


def calibration_terms(
    model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]], bases: torch.Tensor, use: Sequence[str]
) -> dict[int, dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]]]:
    """Per head and kind ("energy", "forces"): lists of projections ``U^T g`` [n, P] and errors [n].

    ``bases`` [H, P, P] are the eigenvectors ``U`` of each head's ``H0``. Frames without the label are skipped.
    """
    terms: dict[int, dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]]] = {}
    for batch in batches:
        heads = batch[keys.HEAD]
        want_forces = "forces" in use
        out = evaluate_with_features(model, batch, bases.to(batch[keys.POSITIONS].device)[heads],
                                     compute_forces=want_forces)
        ptr = batch[keys.PTR].tolist()
        for b, h in enumerate(heads.tolist()):
            slot = terms.setdefault(h, {k: ([], []) for k in use})
            if "energy" in use and bool(batch[keys.HAS_ENERGY][b]):
                slot["energy"][0].append(out[keys.PROJ][b : b + 1].cpu())
                slot["energy"][1].append((out[keys.ENERGY][b] - batch[keys.ENERGY][b]).reshape(1).cpu())
            if want_forces and bool(batch[keys.HAS_FORCES][b]):
                g = out[keys.PROJ_FORCES][:, ptr[b] : ptr[b + 1]].reshape(out[keys.PROJ_FORCES].shape[0], -1)
                slot["forces"][0].append(g.T.cpu())
                err = out[keys.FORCES][ptr[b] : ptr[b + 1]] - batch[keys.FORCES][ptr[b] : ptr[b + 1]]
                slot["forces"][1].append(err.reshape(-1).cpu())
    return terms


def fit_llpr(
    model: torch.nn.Module,
    train: Iterable[Configuration],
    valid: Iterable[Configuration],
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    calibrate_on: Sequence[str] = CALIBRATE_ON,
    reg: float | None = None,
    log: Any = None,
) -> LLPR:
    """Accumulate ``H0`` on ``train`` and calibrate ``alpha^2`` (and ``lambda``, unless ``reg`` is given) on ``valid``."""
    bad = [k for k in calibrate_on if k not in CALIBRATE_ON]
    if bad or not calibrate_on:
        raise DataError(f"calibrate_on: expected a non-empty subset of {list(CALIBRATE_ON)}, got {list(calibrate_on)}")
    gram, counts = accumulate_gram(model, iter_batches(model, train, batch_size, device))
    d, u = torch.linalg.eigh(gram)
    weights = readout_weights(model)
    terms = calibration_terms(model, iter_batches(model, valid, batch_size, device), u, list(calibrate_on))
    heads: dict[str, HeadLLPR] = {}
    for h, name in enumerate(model.heads):
        if int(counts[h]) == 0:
            continue
        slot = terms.get(h, {})
        used = [k for k in calibrate_on if slot.get(k) and slot[k][0]]
        if not used:
            raise DataError(f"validation set: no frame of head '{name}' carries {' or '.join(calibrate_on)} labels")
        q = torch.cat([torch.cat(slot[k][0]) for k in used])
        e = torch.cat([torch.cat(slot[k][1]) for k in used])
        cal = calibrate(q, e, d[h], reg=reg)
        n_valid = len(slot[used[0]][0])
        heads[name] = HeadLLPR(gram[h].clone(), weights[h].clone(), int(counts[h]), cal.alpha2, cal.reg,
                               n_valid, used, cal.nll)
        if log is not None:
            log(f"head {name}: H0 from {int(counts[h])} structures (P = {gram.shape[1]}), calibrated on "
                f"{n_valid} structures ({'+'.join(used)}, {cal.n} terms): alpha^2 = {cal.alpha2:.4g}, "
                f"lambda = {cal.reg:.4g}, NLL/term = {cal.nll:.4f}")
    if not heads:
        raise DataError("training set: no structures")
    return LLPR(heads)


def save_llpr_model(model: torch.nn.Module, llpr: LLPR, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
    """Write ``model`` with ``llpr`` in its metadata (atomic; see :func:`mlip.io.model_file.save_model`)."""
    from mlip.io.model_file import save_model

    save_model(model, path, metadata={**(metadata or {}), "llpr": llpr.to_json()})


def load_llpr(path: str | Path, force_samples: int | None = None) -> LLPR:
    """The LLPR state stored in a model file (JSON only; no code is executed, no model is built).
    ``force_samples``: see :class:`LLPR`."""
    from mlip.io.model_file import read_model_info

    info, _ = read_model_info(path)
    data = (info.get("metadata") or {}).get("llpr")
    if data is None:
        raise ModelFileError(f"{path}: the model file has no LLPR; run mlip-uncertainty fit --model {path} ...")
    llpr = LLPR.from_json(data, source=str(path))
    llpr.force_samples = force_samples
    return llpr


class LLPRPotential:
    """``potential(batch, compute_stress=False) -> dict``: predictions with LLPR uncertainties (see module doc).

    ``force_samples``/``seed``: exact (None) or sampled force and stress variances (see :class:`LLPR`).
    """

    def __init__(self, model: torch.nn.Module, llpr: LLPR, force_samples: int | None = None, seed: int = 0) -> None:
        llpr.check(model)
        self.model = model
        device, dtype = model_device(model), model_dtype(model)
        p = feature_dim(model)
        self.missing = [name for name in model.heads if name not in llpr.heads]
        factors = torch.stack([llpr.heads[name].factor() if name in llpr.heads else torch.zeros(p, p, dtype=torch.float64)
                               for name in model.heads])  # [H, P, P] float64
        self.factors = factors.to(device, dtype)
        if force_samples is None:
            self.directions = self.factors
        else:
            if force_samples < 1:
                raise ValueError(f"force_samples must be >= 1 or None, got {force_samples}")
            gen = torch.Generator().manual_seed(seed)
            omega = torch.randn(factors.shape[2], force_samples, generator=gen, dtype=torch.float64)
            self.directions = (factors @ omega / force_samples**0.5).to(device, dtype)

    def __call__(
        self, batch: dict[str, torch.Tensor], compute_stress: bool = False, compute_forces: bool = True
    ) -> dict[str, torch.Tensor]:
        """``compute_forces=False`` skips forces and their variances (energies only: no backward pass)."""
        heads = batch[keys.HEAD]
        if self.missing and any(self.model.heads[h] in self.missing for h in heads.unique().tolist()):
            raise ModelFileError(f"no LLPR for head(s) {self.missing} (no training frames of them in "
                                 "mlip-uncertainty fit --train)")
        derivatives = compute_forces or compute_stress
        out = evaluate_with_features(self.model, batch, self.directions[heads] if derivatives else None,
                                     compute_forces=compute_forces, compute_stress=compute_stress)
        z = torch.einsum("bp,bpk->bk", out[keys.FEATURES], self.factors[heads].to(out[keys.FEATURES].dtype))
        out[keys.PROJ] = z  # f^T L: inner products are the energy covariance
        out[keys.ENERGY_UNCERTAINTY] = z.pow(2).sum(dim=1).sqrt()
        if compute_forces:
            out[keys.FORCES_VARIANCE] = out.pop(keys.PROJ_FORCES).pow(2).sum(dim=0)
            out[keys.FORCES_UNCERTAINTY] = out[keys.FORCES_VARIANCE].sum(dim=1).sqrt()
        if compute_stress:
            out[keys.STRESS_UNCERTAINTY] = out.pop(keys.PROJ_STRESS).pow(2).sum(dim=0).sqrt()
        return out
