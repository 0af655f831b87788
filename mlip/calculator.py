"""ASE calculator for mlip models.

``MLIPCalculator(model, device, dtype, head, compile, backend, skin)`` gives ASE the energy,
free energy, forces, stress (cells periodic in all three directions; Voigt order
``xx yy zz yz xz xy``, eV/A^3) and per-atom energies (``results["energies"]``, eV, incl. E0).
It works unchanged with ASE's MD integrators, optimisers and cell filters.

Design (details in docs/inference.md):

* The model is copied and cast to the calculator's device and dtype; the caller's module is not
  touched, no global torch state is changed, so float32 and float64 calculators coexist.
* Inputs are checked before any computation: unknown elements, bad head names, degenerate
  periodic cells and cells so thin that the neighbour search would need an exploding number of
  periodic images raise :class:`mlip.errors.DataError` / :class:`mlip.errors.ConfigError`.
* Verlet-style neighbour-list reuse: the list is built with cutoff ``r_max + skin`` and reused
  while no atom has moved more than ``skin / 2`` since the build and cell, pbc and numbers are
  unchanged. Every call filters the cached pairs to ``distance < r_max`` and puts the edges in a
  canonical order, so the model sees exactly the edges of a fresh rebuild in the same order and
  results are bitwise identical to ``skin=0`` (a rebuild every call).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from mlip.data import keys
from mlip.data.neighbors import SkinNeighborList
from mlip.device import resolve_device, resolve_dtype
from mlip.errors import ConfigError, DataError
from mlip.inference import (
    DEFAULT_MAX_IMAGES, check_cell, check_elements, compile_model, evaluate, model_elements, prepare_model,
)
from mlip.nn.heads import model_heads, select_head

__all__ = ["MLIPCalculator"]


# --------------------------------------------------------------------------------------------
# the calculator
# --------------------------------------------------------------------------------------------
class MLIPCalculator(Calculator):
    """ASE calculator running an mlip model.

    Args:
        model: path of a model file (``mlip.io.model_file``) or a model module (copied).
        device: ``"cpu"`` or ``"cuda"`` (or any torch device string).
        dtype: ``"float32"`` or ``"float64"``; the model copy and all inputs use it.
        head: output head by name; ``None`` picks the only head, or ``"Default"``.
        compile: evaluate through :func:`mlip.inference.compile_model` (``torch.compile``,
            dynamic shapes) instead of the eager forward.
        backend: ``"e3nn"`` or ``"cueq"`` (converted when it differs from the model's).
        skin: neighbour-list skin (Angstrom); 0 rebuilds the list at every call.
        max_images: limit of periodic images before a cell counts as too small (see :func:`check_cell`).
        uncertainty: an object with ``potential(model) -> callable`` (:class:`mlip.uncertainty.LLPR`,
            :class:`mlip.uncertainty.Committee`); its evaluator replaces the plain forward (not with ``compile``).

    ``results``: ``energy``, ``free_energy`` (eV), ``forces`` [N,3] (eV/A), ``energies`` [N] (eV),
    and ``stress`` (Voigt 6, eV/A^3) when the cell is periodic in all three directions. With
    ``uncertainty``: ``energy_uncertainty`` (eV, 1 sigma), ``forces_uncertainty`` [N] (eV/A, per atom
    ``sqrt`` of the sum of the three component variances) and, periodic, ``stress_uncertainty`` (Voigt 6,
    eV/A^3, 1 sigma per component); see docs/uncertainty.md.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies",
                              "energy_uncertainty", "forces_uncertainty", "stress_uncertainty"]

    def __init__(
        self,
        model: str | Path | torch.nn.Module,
        device: str = "cpu",
        dtype: str = "float64",
        head: str | None = None,
        compile: bool = False,
        backend: str = "e3nn",
        skin: float = 0.5,
        max_images: int = DEFAULT_MAX_IMAGES,
        uncertainty: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.device = resolve_device(device, key="MLIPCalculator(device=...)")
        self.dtype = resolve_dtype(dtype, key="MLIPCalculator(dtype=...)")
        self.model = prepare_model(model, self.device, self.dtype, backend)
        self.heads, default = model_heads(self.model)
        self.head_index = select_head(self.heads, head, default, key="MLIPCalculator(head=...)")
        self.head = self.heads[self.head_index]
        self.elements = model_elements(self.model)
        self.r_max = float(self.model.r_max)
        self.max_images = int(max_images)
        if skin < 0:
            raise ConfigError(f"MLIPCalculator(skin=...): must be >= 0, got {skin}")
        self.neighbors = SkinNeighborList(self.r_max, skin)
        self._checked_cell: tuple[np.ndarray, np.ndarray] | None = None
        self.potential = compile_model(self.model) if compile else None
        if uncertainty is not None:
            if compile:
                raise ConfigError("MLIPCalculator: uncertainty=... runs eagerly; drop compile=True")
            self.potential = uncertainty.potential(self.model)

    # -- ASE interface ---------------------------------------------------------------------
    def calculate(
        self, atoms: Any = None, properties: list[str] | None = None, system_changes: list[str] = all_changes
    ) -> None:
        properties = properties or ["energy"]
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        periodic3d = bool(np.all(atoms.pbc))
        if "stress" in properties and not periodic3d:
            raise PropertyNotImplementedError("stress needs a cell periodic in all three directions")
        batch = self.make_batch(atoms)
        out = self.evaluate(batch, compute_stress=periodic3d)
        energy = float(out[keys.ENERGY][0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": out[keys.FORCES].cpu().numpy().astype(np.float64),
            "energies": out[keys.NODE_ENERGY].cpu().numpy().astype(np.float64),
        }
        if periodic3d:
            stress = out[keys.STRESS][0].cpu().numpy().astype(np.float64)
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)
        if keys.ENERGY_UNCERTAINTY in out:
            self.results["energy_uncertainty"] = float(out[keys.ENERGY_UNCERTAINTY][0])
            self.results["forces_uncertainty"] = out[keys.FORCES_UNCERTAINTY].cpu().numpy().astype(np.float64)
            if periodic3d:
                sigma = out[keys.STRESS_UNCERTAINTY][0].cpu().numpy().astype(np.float64)
                self.results["stress_uncertainty"] = full_3x3_to_voigt_6_stress(sigma)

    # -- building blocks (usable without ASE's caching) -------------------------------------
    def make_batch(self, atoms: Any) -> dict[str, torch.Tensor]:
        """Check ``atoms`` and build the one-graph batch dict (docs/architecture.md) on device/dtype."""
        numbers = np.asarray(atoms.numbers, dtype=np.int64)
        positions = np.asarray(atoms.positions, dtype=np.float64)
        cell = np.asarray(atoms.cell.array, dtype=np.float64)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        check_elements(numbers, self.elements)
        if self._checked_cell is None or not (
            np.array_equal(cell, self._checked_cell[0]) and np.array_equal(pbc, self._checked_cell[1])
        ):
            check_cell(cell, pbc, self.r_max + self.neighbors.skin, self.max_images)
            self._checked_cell = (cell.copy(), pbc.copy())
        if not np.all(np.isfinite(positions)):
            raise DataError("atoms have non-finite positions")
        edge_index, shifts = self.neighbors.update(positions, cell, pbc, numbers)
        n = len(numbers)
        as_float = {"dtype": self.dtype, "device": self.device}
        as_long = {"dtype": torch.long, "device": self.device}
        return {
            keys.POSITIONS: torch.as_tensor(positions, **as_float),
            keys.NUMBERS: torch.as_tensor(numbers, **as_long),
            keys.BATCH: torch.zeros(n, **as_long),
            keys.PTR: torch.tensor([0, n], **as_long),
            keys.EDGE_INDEX: torch.as_tensor(edge_index, **as_long),
            keys.UNIT_SHIFTS: torch.as_tensor(shifts, **as_float),
            keys.CELL: torch.as_tensor(cell, **as_float).reshape(1, 3, 3),
            keys.PBC: torch.as_tensor(pbc, device=self.device).reshape(1, 3),
            keys.HEAD: torch.tensor([self.head_index], **as_long),
        }

    def get_hessian(self, atoms: Any = None, chunk: int = 16) -> np.ndarray:
        """Analytic Hessian ``[3N, 3N]`` (eV/A^2, rows and columns ordered atom-major: x, y, z of atom 0 first) of
        ``atoms`` (default: the atoms of the last calculation), by double backward
        (:func:`mlip.inference.hessian.hessian`; ``chunk`` rows per backward pass bound the memory)."""
        from mlip.inference.hessian import hessian

        atoms = self.atoms if atoms is None else atoms
        if atoms is None:
            raise ConfigError("MLIPCalculator.get_hessian: give the atoms (no calculation has run yet)")
        return hessian(self.model, self.make_batch(atoms), chunk).cpu().numpy()

    def evaluate(self, batch: dict[str, torch.Tensor], compute_stress: bool = False) -> dict[str, torch.Tensor]:
        """Energy, node energies, forces (and stress) of a batch, eager or compiled."""
        if self.potential is not None:
            return self.potential(batch, compute_stress=compute_stress)
        return evaluate(self.model, batch, compute_stress=compute_stress)
