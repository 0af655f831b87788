"""torch-sim model interface for mlip models (package ``torch-sim-atomistic``; extra ``[torchsim]``).

:class:`MLIPTorchSimModel` implements ``torch_sim.models.interface.ModelInterface``: a batch of
systems in (``positions [N, 3]`` A, ``cell [S, 3, 3]`` in torch-sim's column-vector convention,
``atomic_numbers [N]``, ``system_idx [N]``, ``pbc``), and out ``energy [S]`` (eV), ``forces [N, 3]``
(eV/A) and ``stress [S, 3, 3]`` (eV/A^3, ASE sign: positive = tensile; zero for non-periodic systems).
All systems of a batch go through the model in one call (one disjoint graph); the neighbour list
is built per system on the CPU with vesin (:func:`mlip.data.neighbors.neighbor_list`), the model call is
:func:`mlip.inference.evaluate` (or the compiled :class:`mlip.inference.CompiledPotential`).

Example::

    import torch_sim as ts
    from mlip.integrations.torchsim import MLIPTorchSimModel

    model = MLIPTorchSimModel("model.pt", device="cpu", dtype=torch.float64)
    state = ts.io.atoms_to_state([atoms_a, atoms_b], model.device, model.dtype)
    relaxed = ts.optimize(state, model, optimizer=ts.frechet_cell_fire, max_steps=200)
    final = ts.integrate(state, model, integrator=ts.nvt_langevin, n_steps=1000, timestep=0.001, temperature=300)

``pbc`` may be torch-sim 0.3's single bool, a ``[3]`` flag vector or ``[S, 3]`` per system
(later torch-sim releases). torch-sim 0.3.0 is the release that installs on Python 3.11.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlip.data import keys
from mlip.errors import ConfigError

try:
    from torch_sim.models.interface import ModelInterface
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"torch-sim is not installed ({_err}); install the extra: pip install -e '.[torchsim]' in the mlip clone"
    ) from None


def _field(state: Any, name: str) -> Any:
    return state[name] if isinstance(state, dict) else getattr(state, name)


def system_pbc(pbc: Any, num_systems: int) -> np.ndarray:
    """Periodicity ``[S, 3]`` (bool) from a bool, a ``[3]`` vector or an ``[S, 3]`` array."""
    flags = np.asarray(pbc.detach().cpu() if isinstance(pbc, torch.Tensor) else pbc, dtype=bool)
    if flags.ndim == 0:
        flags = np.full(3, bool(flags))
    return np.broadcast_to(flags, (num_systems, 3)).copy()


class MLIPTorchSimModel(ModelInterface):
    """An mlip model as a torch-sim ``ModelInterface``.

    Args:
        model: mlip model file or module (copied, cast to ``device``/``dtype``, frozen).
        device: torch device (default CPU).
        dtype: ``torch.float64`` or ``torch.float32`` (or their names).
        compute_stress: also return ``stress [S, 3, 3]`` (needed by cell optimisers and NPT).
        head: model head by name (default: the model's only or default head).
        compile: evaluate through ``torch.compile`` (:func:`mlip.inference.compile_model`).
    """

    def __init__(
        self,
        model: str | Path | torch.nn.Module,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str = torch.float64,
        compute_stress: bool = True,
        head: str | None = None,
        compile: bool = False,
    ) -> None:
        from mlip.device import resolve_device, resolve_dtype
        from mlip.inference import compile_model, model_elements, prepare_model
        from mlip.nn.heads import model_heads, select_head

        super().__init__()
        dtype = resolve_dtype(dtype, key="dtype")
        self._device = resolve_device(device, key="device")
        self._dtype = dtype
        self._compute_stress = bool(compute_stress)
        self._compute_forces = True
        self._memory_scales_with = "n_atoms_x_density"
        self.model = prepare_model(model, self._device, dtype)
        heads, default = model_heads(self.model)
        self.head_index = select_head(heads, head, default, key="MLIPTorchSimModel(head=...)")
        self.elements = model_elements(self.model)
        self.r_max = float(self.model.r_max)
        self.potential = compile_model(self.model) if compile else None

    def make_batch(
        self, positions: torch.Tensor, row_cell: torch.Tensor, numbers: torch.Tensor, system_idx: torch.Tensor, pbc: Any
    ) -> dict[str, torch.Tensor]:
        """mlip's batch dict (docs/architecture.md) for systems given as torch-sim tensors.

        ``row_cell [S, 3, 3]`` has the lattice vectors as rows (ASE/mlip convention).
        """
        from mlip.inference import check_cell, check_elements
        from mlip.data.neighbors import neighbor_list

        num_systems = row_cell.shape[0]
        flags = system_pbc(pbc, num_systems)
        pos = positions.detach().cpu().to(torch.float64).numpy()
        cells = row_cell.detach().cpu().to(torch.float64).numpy()
        sys_np = system_idx.detach().cpu().numpy()
        check_elements(numbers.detach().cpu().numpy(), self.elements)
        counts = np.bincount(sys_np, minlength=num_systems)
        if np.any(np.diff(sys_np) < 0):
            raise ConfigError("system_idx must be sorted (atoms of one system contiguous), as torch-sim keeps it")
        ptr = np.concatenate([[0], np.cumsum(counts)])
        senders, receivers, shifts = [], [], []
        for s in range(num_systems):
            check_cell(cells[s], flags[s], self.r_max)
            sender, receiver, unit_shifts, _ = neighbor_list(pos[ptr[s]:ptr[s + 1]], cells[s], flags[s], self.r_max)
            senders.append(sender + ptr[s])
            receivers.append(receiver + ptr[s])
            shifts.append(unit_shifts)
        as_long = {"dtype": torch.long, "device": self._device}
        edge_index = np.stack([np.concatenate(senders), np.concatenate(receivers)])
        return {
            keys.POSITIONS: positions.detach().to(self._dtype),
            keys.NUMBERS: numbers.to(**as_long),
            keys.BATCH: system_idx.to(**as_long),
            keys.PTR: torch.as_tensor(ptr, **as_long),
            keys.EDGE_INDEX: torch.as_tensor(edge_index, **as_long),
            keys.UNIT_SHIFTS: torch.as_tensor(np.concatenate(shifts), dtype=self._dtype, device=self._device),
            keys.CELL: row_cell.detach().to(self._dtype),
            keys.PBC: torch.as_tensor(flags, device=self._device),
            keys.HEAD: torch.full((num_systems,), self.head_index, **as_long),
        }

    def forward(self, state: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """``energy [S]``, ``forces [N, 3]`` and (with ``compute_stress``) ``stress [S, 3, 3]`` of a SimState or state dict."""
        from mlip.inference import evaluate

        positions = _field(state, "positions").to(self._device)
        cell = _field(state, "cell").to(self._device)
        row_cell = cell.transpose(-1, -2).reshape(-1, 3, 3)  # torch-sim keeps lattice vectors as columns
        system_idx = _field(state, "system_idx")
        if system_idx is None:
            system_idx = torch.zeros(positions.shape[0], dtype=torch.long)
        batch = self.make_batch(positions, row_cell, _field(state, "atomic_numbers"), system_idx.to(self._device),
                                _field(state, "pbc"))
        if self.potential is not None:
            out = self.potential(batch, compute_stress=self._compute_stress)
        else:
            out = evaluate(self.model, batch, compute_stress=self._compute_stress)
        # mlip sums energies in float64 even for a float32 model; torch-sim expects the model's dtype
        result = {"energy": out[keys.ENERGY].detach().to(self._dtype),
                  "forces": out[keys.FORCES].detach().to(self._dtype)}
        if self._compute_stress:
            result["stress"] = out[keys.STRESS].detach().to(self._dtype)
        return result
