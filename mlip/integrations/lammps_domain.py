"""One LAMMPS domain (an MPI rank's owned atoms plus their ghost copies) through an mlip model, exactly.

LAMMPS decomposes the box into one subdomain per rank. Each rank owns the atoms inside its subdomain
(``nlocal``) and holds ghost copies of the atoms within the communication cutoff around it (other ranks'
atoms, and periodic images, its own included). Method, with ``R = r_max``:

* **Graph.** The rank's atoms (owned first, then ghosts, as LAMMPS stores them, ghosts at their image
  positions) form one open cluster. Its edges are every pair closer than ``R`` whose *receiver is owned*.
  With a ghost shell of ``R + skin`` around the subdomain (set by :mod:`mlip.integrations.lammps`) an
  owned atom has all its neighbours, so the rank computes exactly the messages, node features and energies
  of its owned atoms; ghosts only get each interaction's first linear layer (they are senders).
* **Node features between interactions** (:class:`TagExchange`): after each interaction the owned
  atoms' features are written into a table indexed by LAMMPS atom ID, summed over ranks (MPI Allreduce),
  and every ghost reads the row of its ID. The exchange's backward sends the ghosts' feature gradients
  back to their owners the same way, so autograd on each rank yields derivatives of the *total* energy.
* **Forces, virials.** The rank differentiates the energy of its owned atoms with respect to the cluster's
  positions and to a zero shift on every edge vector (``dE/d r_e``). Ghost position gradients go to
  their owners' rows of the ID table; per-atom virials are ``-1/2 sym(r_e (x) dE/dr_e)`` to each of the
  edge's two atoms; the global virial is their sum. One Allreduce per call carries forces, per-atom
  virials and energies, positions (for the repeated-setup check) and the totals.

Cost per rank: model work on owned atoms and their edges only, plus one linear layer per interaction on ghosts;
two Allreduces of ``[max ID, F]`` per exchange (after every interaction but the last: forward and backward) and
one of ``[max ID, 13]`` per call. The ID tables make communication O(total atoms) per rank: fine on one node, a
bound for many. One process may skip the ghosts altogether: owned atoms and the periodic cell (see ``__call__``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mlip.data import keys
from mlip.data.neighbors import SkinNeighborList

__all__ = ["DomainPotential", "DomainResult", "TagExchange", "virial_voigt"]

# columns of the per-ID table reduced once per call
_F, _V, _E, _X = slice(0, 3), slice(3, 9), 9, slice(10, 13)
_WIDTH = 13


class TagExchange:
    """Rows of per-atom tensors copied from owners to ghosts by atom ID (``comm=None``: one process).

    Call :meth:`setup` with the IDs of the owned atoms and of all atoms (owned first) before each model
    call; :meth:`spread` is then the differentiable owner -> copies map used between interactions.
    """

    def __init__(self, comm: Any = None) -> None:
        self.comm = comm
        self.owned: torch.Tensor | None = None
        self.every: torch.Tensor | None = None
        self.num_rows = 1
        self.outputs: list[torch.Tensor] = []
        self.anchor = torch.zeros((), dtype=torch.float64, requires_grad=True)

    def setup(self, owned: np.ndarray, every: np.ndarray, device: torch.device) -> int:
        """IDs ``owned [nlocal]`` and ``every [N]`` (1-based); returns the table size (max ID over ranks + 1)."""
        local_max = int(every.max()) if every.size else 0
        self.num_rows = 1 + (int(self.comm.allreduce(local_max, op=_mpi_max())) if self.comm is not None else local_max)
        self.owned = torch.as_tensor(owned, dtype=torch.long, device=device)
        self.every = torch.as_tensor(every, dtype=torch.long, device=device)
        self.outputs = []
        return self.num_rows

    def allreduce_(self, table: torch.Tensor) -> torch.Tensor:
        """Sum ``table`` over ranks in place (a CPU tensor travels as numpy; a CUDA one through the CPU)."""
        if self.comm is None:
            return table
        from mpi4py import MPI

        host = table.detach().cpu() if table.device.type != "cpu" else table.detach()
        array = host.numpy()
        self.comm.Allreduce(MPI.IN_PLACE, array, op=MPI.SUM)
        if host is not table:
            table.copy_(host)
        return table

    def spread(self, owned_rows: torch.Tensor) -> torch.Tensor:
        """``[nlocal, F]`` rows of the owned atoms -> ``[N, F]`` rows of every atom (ghosts from their owners)."""
        out = _Spread.apply(owned_rows, self.anchor, self)
        self.outputs.append(out)
        return out

    def keepalive(self) -> torch.Tensor:
        """A zero that depends on every :meth:`spread` output: every rank then runs every backward exchange,
        also where its own energy does not depend on one (no owned atoms): the collectives stay matched."""
        zero = self.anchor * 0.0
        for out in self.outputs:
            zero = zero + 0.0 * out.sum().to(zero.dtype)
        return zero


class _Spread(torch.autograd.Function):
    """Owner rows -> all rows by ID; backward: all rows' gradients summed back onto their owners."""

    @staticmethod
    def forward(ctx: Any, owned_rows: torch.Tensor, anchor: torch.Tensor, exchange: TagExchange) -> torch.Tensor:
        ctx.exchange = exchange
        table = owned_rows.new_zeros((exchange.num_rows, owned_rows.shape[1]))
        table[exchange.owned] = owned_rows.detach()
        return exchange.allreduce_(table)[exchange.every]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        exchange = ctx.exchange
        table = grad.new_zeros((exchange.num_rows, grad.shape[1]))
        table.index_add_(0, exchange.every, grad)
        return exchange.allreduce_(table)[exchange.owned], torch.zeros_like(exchange.anchor), None


def _mpi_max() -> Any:
    from mpi4py import MPI

    return MPI.MAX


def virial_voigt(tensors: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 3]`` -> ``[..., 6]`` in LAMMPS's order ``xx, yy, zz, xy, xz, yz`` (symmetrised)."""
    sym = 0.5 * (tensors + tensors.transpose(-1, -2))
    return torch.stack([sym[..., 0, 0], sym[..., 1, 1], sym[..., 2, 2], sym[..., 0, 1], sym[..., 0, 2],
                        sym[..., 1, 2]], dim=-1)


@dataclass
class DomainResult:
    """One call's results: totals over all ranks, per-atom values of this rank's owned atoms.

    ``energy`` (eV), ``virial [6]`` (eV, ``xx yy zz xy xz yz``, ``-dE/d strain``), ``forces [nlocal, 3]``
    (eV/A), ``energies [nlocal]`` (eV, E0 included) and ``virials [nlocal, 6]`` (eV); ``table [max ID + 1,
    13]`` holds every atom's forces, virials, energy and position by ID (for reuse at the same step).
    """

    energy: float
    virial: np.ndarray
    forces: np.ndarray
    energies: np.ndarray
    virials: np.ndarray
    table: np.ndarray


class DomainPotential:
    """The per-rank evaluator: ``potential(positions, numbers, ids, nlocal) -> DomainResult``.

    Args:
        model: a prepared mlip model (:func:`mlip.inference.prepare_model`: eval mode, frozen).
        head_index: the output head.
        comm: an mpi4py communicator over the LAMMPS ranks, or ``None`` on one process.
        skin: Verlet skin of the rank's own neighbour list (A; as the ASE calculator's), reused while no atom
            has moved ``skin / 2`` and the atoms (by ID), cell and periodicity are unchanged.
    """

    def __init__(self, model: torch.nn.Module, head_index: int, comm: Any = None, skin: float = 0.5) -> None:
        self.model = model
        self.head_index = int(head_index)
        self.exchange = TagExchange(comm)
        self.r_max = float(model.r_max)
        self.dtype = model.dtype
        self.device = next(iter(model.buffers())).device
        self.neighbors = SkinNeighborList(self.r_max, skin)

    def _batch(
        self, positions: np.ndarray, numbers: np.ndarray, ids: np.ndarray, nlocal: int, cell: np.ndarray | None,
        pbc: np.ndarray | None,
    ) -> dict[str, torch.Tensor]:
        """The graph: edges within ``r_max`` with an owned receiver, each with its Cartesian lattice shift (a
        leaf with grad: ``dE/d shift = dE/d r_e``). Without ``cell`` the atoms are an open cluster (shifts 0)."""
        box = np.zeros((3, 3)) if cell is None else cell
        # reused while no atom moved half the skin; keyed by atom IDs, so LAMMPS re-ordering rebuilds it
        edge_index, unit_shifts = self.neighbors.update(positions, box, np.zeros(3, dtype=bool) if cell is None else pbc,
                                                        ids)
        keep = edge_index[1] < nlocal  # canonical order (grouped by receiver) is kept
        sender, receiver, unit_shifts = edge_index[0][keep], edge_index[1][keep], unit_shifts[keep]
        shifts = unit_shifts @ cell if cell is not None else np.zeros((len(sender), 3))
        as_float = {"dtype": self.dtype, "device": self.device}
        as_long = {"dtype": torch.long, "device": self.device}
        n = len(numbers)
        return {
            keys.POSITIONS: torch.as_tensor(positions, **as_float).requires_grad_(True),
            keys.NUMBERS: torch.as_tensor(numbers, **as_long),
            keys.BATCH: torch.zeros(n, **as_long),
            keys.PTR: torch.tensor([0, n], **as_long),
            keys.EDGE_INDEX: torch.as_tensor(np.stack([sender, receiver]), **as_long),
            keys.UNIT_SHIFTS: torch.as_tensor(shifts, **as_float).requires_grad_(True),
            keys.CELL: torch.eye(3, **as_float).reshape(1, 3, 3),  # unit shifts are Cartesian here
            keys.PBC: torch.zeros((1, 3), dtype=torch.bool, device=self.device),
            keys.HEAD: torch.tensor([self.head_index], **as_long),
        }

    def __call__(
        self, positions: np.ndarray, numbers: np.ndarray, ids: np.ndarray, nlocal: int,
        cell: np.ndarray | None = None, pbc: np.ndarray | None = None,
    ) -> DomainResult:
        """``positions [N, 3]`` (A), ``numbers [N]`` (atomic numbers) and ``ids [N]`` (LAMMPS atom IDs) of the
        rank's atoms, the ``nlocal`` owned ones first. Collective: every rank calls it once per evaluation.

        One process may instead pass its owned atoms only (``N = nlocal``) with the periodic ``cell [3, 3]``
        and ``pbc [3]``: periodic images then come from the neighbour list, not from ghost atoms.
        """
        batch = self._batch(positions, numbers, ids, nlocal, cell, pbc)
        rows = self.exchange.setup(ids[:nlocal], ids, self.device)
        # several ranks always exchange (the collectives must match); one process only with ghost copies
        spread = self.exchange.spread if self.exchange.comm is not None or len(ids) > nlocal else None
        energies = self.model.local_energies(batch, nlocal, spread)
        total = energies.sum() + self.exchange.keepalive()
        inputs = [batch[keys.POSITIONS], batch[keys.UNIT_SHIFTS], self.exchange.anchor]
        grads = torch.autograd.grad(total, inputs, allow_unused=True)
        g_pos, g_edge = (torch.zeros_like(x) if g is None else g for g, x in zip(grads[:2], inputs[:2]))
        return self._reduce(batch, energies.detach(), g_pos.double(), g_edge.double(), positions, ids, nlocal, rows)

    def _reduce(
        self, batch: dict[str, torch.Tensor], energies: torch.Tensor, g_pos: torch.Tensor, g_edge: torch.Tensor,
        positions: np.ndarray, ids: np.ndarray, nlocal: int, rows: int,
    ) -> DomainResult:
        """Gather per-ID sums over ranks: forces, per-atom virials, energies, positions and the totals (row 0)."""
        sender, receiver = batch[keys.EDGE_INDEX]
        pos = batch[keys.POSITIONS].detach().double()
        vectors = pos[receiver] - pos[sender] + batch[keys.UNIT_SHIFTS].detach().double()
        edge_virial = virial_voigt(-vectors[:, :, None] * g_edge[:, None, :])  # [E, 6]
        every = torch.as_tensor(ids, dtype=torch.long, device=g_pos.device)
        table = torch.zeros((rows, _WIDTH), dtype=torch.float64, device=g_pos.device)
        table[:, _F].index_add_(0, every, -g_pos)
        table[:, _V].index_add_(0, every[sender], 0.5 * edge_virial)
        table[:, _V].index_add_(0, every[receiver], 0.5 * edge_virial)
        owned = every[:nlocal]
        table[owned, _E] = energies
        table[owned, _X] = torch.as_tensor(positions[:nlocal], dtype=torch.float64, device=g_pos.device)
        table[0, 0] = energies.sum()
        table[0, _V] = edge_virial.sum(dim=0)
        table = self.exchange.allreduce_(table).cpu().numpy()
        local = ids[:nlocal]
        return DomainResult(
            energy=float(table[0, 0]), virial=table[0, _V].copy(), forces=table[local, _F].copy(),
            energies=table[local, _E].copy(), virials=table[local, _V].copy(), table=table,
        )
