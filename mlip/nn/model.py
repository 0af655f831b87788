"""The MACE model: embedding, interaction/product layers, readouts, energy, forces, stress.

``E = sum_i [ E0(z_i, head) + scale(head) * (E_ZBL,i + sum_t readout_t(h_i^t)) + shift(head) ]``
or, with ``edge_energy_readout``, ``E = sum_i E0(z_i, head) + scale(head) * sum_ij (eps_ij + E_ZBL,ij)``
over directed edges (:mod:`mlip.nn.edge_readout`, no shift; output ``edge_energy``).
(Batatia et al. 2022; MACE-MP-0 for ZBL/density/Agnesi; MACE-MH-1 for the non-linear block and heads).
Forces ``F = -dE/dr``; stress ``(1/V) dE/d(eps)`` and virials ``-dE/d(eps)`` for a symmetric strain
``eps`` applied to positions and cell (edge shifts are ``unit_shifts @ cell`` inside the model).

The batch format and outputs are those of docs/architecture.md.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from e3nn import o3

from mlip.data import keys
from mlip.errors import ConfigError, DataError
from mlip.nn.blocking import BlockPlan, Blocking, blocked_rows
from mlip.nn.convolution import batch_layout
from mlip.nn.edge_readout import EdgeEnergyReadout
from mlip.nn.grad_output import energy_gradients, strain, zero_displacement
from mlip.nn.hparams import ModelHyperparameters
from mlip.nn.interaction import InteractionBlock, NonLinearInteraction
from mlip.nn.layers import make_linear
from mlip.nn.pair import ZBL
from mlip.nn.radial import RadialEmbedding
from mlip.nn.readout import LinearReadout, MLPReadout, ProductBlock
from mlip.nn.wigner import refresh_wigner_buffers


def interaction_irreps(max_ell: int, num_channels: int) -> o3.Irreps:
    """``num_channels x (0e + 1o + .. + max_ell)``, sorted and simplified."""
    return (o3.Irreps.spherical_harmonics(max_ell) * num_channels).sort()[0].simplify()


_KINDS = ("residual", "plain", "density", "density_residual", "nonlinear")


def validate_hparams(hp: ModelHyperparameters) -> None:
    """Raise :class:`ConfigError` naming the first inconsistent hyper-parameter."""

    def bad(key: str, what: str) -> ConfigError:
        return ConfigError(f"model hyper-parameter '{key}': {what}")

    zs = list(hp.atomic_numbers)
    if not zs or any(not (1 <= int(z) <= 118) for z in zs) or sorted(set(zs)) != zs:
        raise bad("atomic_numbers", f"need sorted unique atomic numbers in 1..118, got {zs}")
    H = len(hp.heads)
    if H == 0 or len(set(hp.heads)) != H:
        raise bad("heads", f"need unique head names, got {hp.heads}")
    for key in ("scale", "shift"):
        if len(getattr(hp, key)) != H:
            raise bad(key, f"need one value per head ({H}), got {getattr(hp, key)}")
    if hp.atomic_energies:
        rows = hp.atomic_energies if isinstance(hp.atomic_energies[0], list) else [hp.atomic_energies]
        if len(rows) != H or any(len(r) != len(zs) for r in rows):
            raise bad("atomic_energies", f"need [heads={H}][elements={len(zs)}] values")
    for key in ("interaction", "interaction_first"):
        if getattr(hp, key) not in _KINDS:
            raise bad(key, f"{getattr(hp, key)!r} is not one of {', '.join(_KINDS)}")
    if hp.distance_transform not in (None, "agnesi", "Agnesi"):
        raise bad("distance_transform", f"{hp.distance_transform!r} is not null or 'agnesi'")
    if hp.gate not in ("silu", "tanh", "none"):
        raise bad("gate", f"{hp.gate!r} is not silu, tanh or none")
    for key in ("hidden_irreps", "mlp_irreps") + (("edge_irreps",) if hp.edge_irreps else ()):
        try:
            o3.Irreps(getattr(hp, key))
        except (ValueError, AssertionError) as err:
            raise bad(key, f"cannot parse irreps {getattr(hp, key)!r} ({err})") from None
    hidden = o3.Irreps(hp.hidden_irreps)
    if len({mul for mul, _ in hidden}) != 1 or hidden[0].ir != o3.Irrep("0e"):
        raise bad("hidden_irreps", f"need equal multiplicities starting with 0e, got {hidden}")
    if hp.num_interactions < 1:
        raise bad("num_interactions", "must be >= 1")
    corr = hp.correlation if isinstance(hp.correlation, list) else [hp.correlation]
    if any(int(c) < 1 for c in corr) or (isinstance(hp.correlation, list) and len(corr) != hp.num_interactions):
        raise bad("correlation", f"need an int >= 1 or one per layer, got {hp.correlation}")
    if not hp.r_max > 0 or hp.num_bessel < 1 or hp.num_polynomial_cutoff < 1 or hp.max_ell < 0:
        raise bad("r_max/num_bessel/num_polynomial_cutoff/max_ell", "must be positive")
    if hp.backend not in ("e3nn", "cueq"):
        raise bad("backend", f"{hp.backend!r} is not e3nn or cueq")


class MACE(torch.nn.Module):
    """MACE-family potential described by :class:`ModelHyperparameters`. Build with :func:`build_model`."""

    def __init__(self, hparams: ModelHyperparameters):
        super().__init__()
        hp = hparams
        validate_hparams(hp)
        self.hparams = hp
        self.atomic_numbers = [int(z) for z in hp.atomic_numbers]
        self.heads = list(hp.heads)
        self.r_max = float(hp.r_max)
        E = len(self.atomic_numbers)
        H = len(self.heads)
        if E == 0:
            raise ValueError("hparams.atomic_numbers is empty")
        table = torch.full((119,), -1, dtype=torch.long)
        for i, z in enumerate(self.atomic_numbers):
            table[z] = i
        self.register_buffer("z_to_index", table, persistent=False)
        self.register_buffer("z_of_index", torch.tensor(self.atomic_numbers, dtype=torch.long), persistent=False)
        energies = torch.tensor(hp.atomic_energies, dtype=torch.float64) if hp.atomic_energies else torch.zeros(H, E)
        if energies.dim() == 1:
            energies = energies.unsqueeze(0)
        self.register_buffer("atomic_energies", energies.reshape(H, E).to(torch.float64))
        self.register_buffer("scale", torch.tensor(hp.scale, dtype=torch.float64).reshape(H))
        self.register_buffer("shift", torch.tensor(hp.shift, dtype=torch.float64).reshape(H))
        # E0s, scale and shift stay float64 whatever the model's dtype (see _apply; docs/model.md,
        # "Precision"); this empty buffer follows .to() and tells the model's float dtype.
        self.register_buffer("dtype_probe", torch.zeros(0), persistent=False)  # default dtype, like e3nn

        hidden = o3.Irreps(hp.hidden_irreps)
        n0 = hidden.count(o3.Irrep("0e"))
        if hidden.count(o3.Irrep("0o")) > 0:
            raise ValueError("hidden irreps with odd scalars (0o) are not supported")
        sh_irreps = o3.Irreps.spherical_harmonics(hp.max_ell)
        self.spherical_harmonics = o3.SphericalHarmonics(sh_irreps, normalize=True, normalization="component")
        self.node_embedding = make_linear(f"{E}x0e", f"{n0}x0e")
        self.radial_embedding = RadialEmbedding(
            hp.r_max,
            hp.num_bessel,
            hp.num_polynomial_cutoff,
            distance_transform=(hp.distance_transform or "").lower() or None,
            apply_cutoff=hp.apply_cutoff,
        )
        self.pair = ZBL(p=hp.num_polynomial_cutoff) if hp.pair_repulsion else None

        self._build_layers(hp, n0, hidden, sh_irreps)
        self.scalar_dims = [o3.Irreps(p.contraction.irreps_out).count(o3.Irrep("0e")) for p in self.products]
        self.edge_readout: EdgeEnergyReadout | None = None
        if hp.edge_energy_readout:
            self.edge_readout = EdgeEnergyReadout(sum(self.scalar_dims), hp.num_bessel, H)
            # start near the training-set mean: shift per atom spread over ~avg_num_neighbors edges
            bias = self.shift / (self.scale.clamp_min(1e-12) * max(float(hp.avg_num_neighbors), 1.0))
            with torch.no_grad():
                self.edge_readout.mlp[-1].bias.copy_(bias.to(self.edge_readout.mlp[-1].bias.dtype))
        if hp.backend != "e3nn":  # swap tensor products / linears (same parameters, mlip.nn.backends)
            from mlip.nn.backends import apply_backend

            apply_backend(self, hp.backend)

    FLOAT64_BUFFERS: tuple[str, ...] = ("atomic_energies", "scale", "shift")
    """Energy constants kept in float64 by ``.to()``/``.float()`` (they only follow device moves)."""

    @property
    def dtype(self) -> torch.dtype:
        """The float dtype of the parameters and features (inputs are cast to it)."""
        return self.dtype_probe.dtype

    def _build_layers(self, hp: ModelHyperparameters, n0: int, hidden: o3.Irreps, sh_irreps: o3.Irreps) -> None:
        """Interaction, product and (per-atom) readout blocks of every layer, in parameter order."""
        E = len(self.atomic_numbers)
        L = hp.num_interactions
        corr = hp.correlation if isinstance(hp.correlation, list) else [hp.correlation] * L
        target = interaction_irreps(hp.max_ell, n0)
        scalars_only = o3.Irreps(str(hidden[0]))
        self.interactions = torch.nn.ModuleList()
        self.products = torch.nn.ModuleList()
        self.readouts = torch.nn.ModuleList()
        node_irreps = o3.Irreps(f"{n0}x0e")
        for t in range(L):
            kind = hp.interaction_first if t == 0 else hp.interaction
            out_irreps = scalars_only if t == L - 1 else hidden
            if kind == "nonlinear":
                edge_irreps = node_irreps if (t == 0 or hp.edge_irreps is None) else o3.Irreps(hp.edge_irreps)
                inter: torch.nn.Module = NonLinearInteraction(
                    node_irreps, sh_irreps, hp.num_bessel, target, out_irreps, edge_irreps, E, hp.radial_mlp
                )
            else:
                inter = InteractionBlock(
                    kind, node_irreps, sh_irreps, hp.num_bessel, target, out_irreps, E, hp.avg_num_neighbors, hp.radial_mlp
                )
            self.interactions.append(inter)
            self.products.append(ProductBlock(target, out_irreps, corr[t], E, hp.use_agnostic_product))
            if hp.edge_energy_readout:
                pass  # the edge readout below replaces the per-atom readouts
            elif t == L - 1 and L > 1:  # (a single-layer model has only a linear readout, as in mace-torch)
                self.readouts.append(MLPReadout(out_irreps, hp.mlp_irreps, hp.gate, len(self.heads)))
            else:
                self.readouts.append(LinearReadout(out_irreps, len(self.heads)))
            node_irreps = out_irreps

    def _apply(self, fn, recurse=True):  # .to()/.double()/.cuda(): keep coupling constants exact
        exact = {name: self._buffers[name] for name in self.FLOAT64_BUFFERS}
        out = super()._apply(fn, recurse)
        for name, old in exact.items():  # device moves only; the values stay float64
            self._buffers[name] = old.to(device=self._buffers[name].device, dtype=torch.float64)
        refresh_wigner_buffers(self)
        return out

    # ------------------------------------------------------------------ helpers
    blocking: Blocking | None = Blocking()
    """Eager inference evaluates edges and products a block of atoms at a time (:mod:`mlip.nn.blocking`;
    same numbers, no large temporaries); ``None`` evaluates every atom at once. Training (``training=True``)
    and compiled graphs always evaluate every atom at once."""

    def _block_plan(self, training: bool, num_edges: int, num_nodes: int) -> BlockPlan | None:
        """The blocking of this call (``None``: all atoms at once), from :attr:`blocking` and the call's size."""
        if training or torch.compiler.is_compiling() or self.blocking is None:
            return None
        widths = [getattr(inter, "edge_width", 0) for inter in self.interactions]
        node_widths = [getattr(prod.contraction, "node_elements", 0) for prod in self.products]
        return self.blocking.plan(num_edges * sum(widths) + num_nodes * sum(node_widths), self.dtype)

    def element_index(self, numbers: torch.Tensor) -> torch.Tensor:
        """Map atomic numbers ``[N]`` to model element indices; unknown elements raise ``DataError``."""
        bad = (numbers < 0) | (numbers > 118)
        idx = self.z_to_index[numbers.clamp(0, 118)]
        if not torch.compiler.is_compiling():
            if bool((bad | (idx < 0)).any()):
                unknown = sorted({int(z) for z in numbers[bad | (idx < 0)].tolist()})
                raise DataError(
                    f"atomic numbers {unknown} are not known to this model (elements {self.atomic_numbers})"
                )
        return idx

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        batch: dict[str, torch.Tensor],
        compute_forces: bool = True,
        compute_stress: bool = False,
        training: bool = False,
    ) -> dict[str, torch.Tensor]:
        dtype = self.dtype  # the model's float dtype; inputs are cast to it
        positions = batch[keys.POSITIONS]
        if positions.dtype != dtype:
            positions = positions.to(dtype)
        node_graph = batch[keys.BATCH]
        num_graphs = batch[keys.PTR].shape[0] - 1
        element = self.element_index(batch[keys.NUMBERS])
        one_hot = torch.nn.functional.one_hot(element, len(self.atomic_numbers)).to(dtype)
        node_head = batch[keys.HEAD][node_graph] if keys.HEAD in batch else torch.zeros_like(node_graph)
        cell = batch[keys.CELL].reshape(-1, 3, 3).to(dtype)

        if compute_forces and not positions.requires_grad:
            positions = positions.detach().clone().requires_grad_(True)
        leaf_positions = positions
        displacement = None
        if compute_stress:
            displacement = batch.get(keys.DISPLACEMENT)  # the caller's strain handle (compiled training), else ours
            if displacement is None:
                displacement = zero_displacement(num_graphs, positions)
            positions, cell = strain(positions, cell, node_graph, displacement)

        plan = self._block_plan(training, batch[keys.EDGE_INDEX].shape[1], positions.shape[0])
        node_inter, descriptors, edge_energy = self._interactions(
            positions, cell, batch, element, one_hot, node_head, node_graph, blocking=plan
        )
        node_e0 = self.atomic_energies[node_head, element]  # float64
        # 1-D sums (edges into atoms above, atoms into graphs here) use scatter_add, not index_add:
        # torch 2.13's inductor fails to generate multi-threaded C++ for a 1-D index_add into a
        # size-1 output (one graph, as in the calculator; one atom in a periodic cell).
        # Energies are summed and returned in float64 whatever the model's dtype (E0s are float64):
        # a float32 total of ~1e4 eV would be rounded to ~1e-3 eV (docs/model.md, "Precision").
        f64 = torch.float64
        node_inter = node_inter.to(f64)
        inter_e = torch.zeros(num_graphs, dtype=f64, device=positions.device).scatter_add(0, node_graph, node_inter)
        e0 = torch.zeros(num_graphs, dtype=f64, device=positions.device).scatter_add(0, node_graph, node_e0)
        out: dict[str, torch.Tensor] = {
            keys.ENERGY: e0 + inter_e,
            keys.NODE_ENERGY: node_e0 + node_inter,
            keys.INTERACTION_ENERGY: inter_e,
            keys.NODE_FEATS: torch.cat(descriptors, dim=-1),
        }
        if edge_energy is not None:
            out[keys.EDGE_ENERGY] = edge_energy
        if compute_forces or compute_stress:  # E0s do not depend on positions: differentiate inter_e
            out.update(energy_gradients(
                inter_e, leaf_positions if compute_forces else None, displacement,
                batch[keys.CELL].reshape(-1, 3, 3).to(dtype), batch.get(keys.PBC), create_graph=training,
            ))
        return out


    # ------------------------------------------------------------------ message passing
    @staticmethod
    def _product(
        prod: torch.nn.Module, a: torch.Tensor, sc: torch.Tensor | None, element: torch.Tensor,
        present: torch.Tensor | None, blocking: BlockPlan | None,
    ) -> torch.Tensor:
        """``prod(a, sc, element, present)``, a block of atoms at a time with ``blocking``."""
        if blocking is None:
            return prod(a, sc, element, present)
        width = getattr(prod.contraction, "node_elements", 0)  # 0: a backend's contraction, one block
        rows = blocking.rows(width) if width else a.shape[0]
        product = functools.partial(prod, present=present)
        return blocked_rows(product, rows, (a, sc, element), recompute=blocking.recompute)

    def _interactions(
        self,
        positions: torch.Tensor,
        cell: torch.Tensor,
        batch: dict[str, torch.Tensor],
        element: torch.Tensor,
        one_hot: torch.Tensor,
        node_head: torch.Tensor,
        node_graph: torch.Tensor,
        num_local: int | None = None,
        exchange: Callable[[torch.Tensor], torch.Tensor] | None = None,
        blocking: BlockPlan | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
        """Interaction energies of the atoms (model dtype, before E0s), their descriptors, and edge energies.

        ``blocking``: edges and products a block of atoms at a time (:mod:`mlip.nn.blocking`).

        Without ``num_local`` every atom is computed: ``node_inter [N]``. With it (domain decomposition,
        :meth:`local_energies`) only the first ``num_local`` atoms are: every edge must have a receiver below
        ``num_local``, and ``exchange(h [num_local, F]) -> [N, F]`` fills in the features of the other atoms
        (ghosts owned elsewhere) between interactions.
        """
        dtype = self.dtype
        num_nodes = positions.shape[0]
        num_out = num_nodes if num_local is None else num_local
        edge_index = batch[keys.EDGE_INDEX]
        sender, receiver = edge_index[0], edge_index[1]
        shifts = torch.einsum("ei,eij->ej", batch[keys.UNIT_SHIFTS].to(dtype), cell[node_graph[sender]])
        vectors = positions[receiver] - positions[sender] + shifts
        lengths = torch.linalg.norm(vectors, dim=-1, keepdim=True)
        edge_gate = batch.get(keys.EDGE_GATE)
        if edge_gate is not None:
            edge_gate = edge_gate.to(dtype)

        z = self.z_of_index[element]
        edge_attrs = self.spherical_harmonics(vectors)
        edge_feats, envelope = self.radial_embedding(lengths, z[sender], z[receiver])
        cutoff = None if self.radial_embedding.apply_cutoff else envelope
        out_head, out_element = node_head[:num_out], element[:num_out]

        if self.pair is not None and self.edge_readout is None:
            node_inter = self.pair(lengths, z[sender], z[receiver], receiver, num_out, edge_gate)
        else:
            node_inter = torch.zeros(num_out, dtype=dtype, device=positions.device)

        layout = None if blocking is not None else batch_layout(batch, num_nodes, num_out)
        present = self.element_index(batch[keys.SPECIES]) if keys.SPECIES in batch else None
        h = self.node_embedding(one_hot)
        descriptors = []
        last = len(self.interactions) - 1
        for t, (inter, prod, n_scalar) in enumerate(zip(self.interactions, self.products, self.scalar_dims)):
            a, sc = inter(h, one_hot, edge_attrs, edge_feats, cutoff, edge_index, edge_gate,
                          num_local=num_local, blocking=blocking, layout=layout)
            h = self._product(prod, a, sc, out_element, present, blocking)
            descriptors.append(h[:, :n_scalar])
            if self.edge_readout is None:
                node_inter = node_inter + self.readouts[t](h, out_head)
            if exchange is not None and t < last:
                h = exchange(h)

        edge_energy = None
        if self.edge_readout is None:
            node_inter = self.scale.to(dtype)[out_head] * node_inter + self.shift.to(dtype)[out_head]
        else:
            edge_head = node_head[receiver]
            node_descriptors = torch.cat(descriptors, dim=-1)
            if exchange is not None:  # the readout reads the sender's descriptors too
                node_descriptors = exchange(node_descriptors)
            edge_energy = self.edge_readout(node_descriptors, edge_feats, envelope, edge_index, edge_head)
            if self.pair is not None:
                edge_energy = edge_energy + self.pair.edge_energy(lengths, z[sender], z[receiver])
            if edge_gate is not None:
                edge_energy = edge_energy * edge_gate
            edge_energy = self.scale.to(dtype)[edge_head] * edge_energy
            node_inter = node_inter.scatter_add(0, receiver, edge_energy)
        return node_inter, descriptors, edge_energy

    def local_energies(
        self, batch: dict[str, torch.Tensor], num_local: int,
        exchange: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Per-atom energies ``[num_local]`` (eV, float64, E0 included) of a domain's own atoms.

        Domain decomposition (:mod:`mlip.integrations.lammps_domain`): ``batch`` is one graph of the
        ``num_local`` owned atoms first, then ghost atoms; its edges are exactly those within ``r_max``
        whose receiver is owned. ``exchange`` gives every atom the node features of the atom it is a copy
        of (see :meth:`_interactions`); ``None`` when every atom is owned. No forces here: the caller
        differentiates the sum.
        """
        dtype = self.dtype
        positions = batch[keys.POSITIONS].to(dtype)
        node_graph = batch[keys.BATCH]
        element = self.element_index(batch[keys.NUMBERS])
        one_hot = torch.nn.functional.one_hot(element, len(self.atomic_numbers)).to(dtype)
        node_head = batch[keys.HEAD][node_graph]
        cell = batch[keys.CELL].reshape(-1, 3, 3).to(dtype)
        if bool((batch[keys.EDGE_INDEX][1] >= num_local).any()):
            raise ValueError("local_energies: every edge needs an owned receiver (index < num_local)")
        node_inter, _, _ = self._interactions(
            positions, cell, batch, element, one_hot, node_head, node_graph, num_local, exchange,
            blocking=self._block_plan(False, batch[keys.EDGE_INDEX].shape[1], num_local),
        )
        return self.atomic_energies[node_head[:num_local], element[:num_local]] + node_inter.to(torch.float64)

def build_model(hparams: ModelHyperparameters, dtype: torch.dtype | None = None) -> MACE:
    """Build a :class:`MACE` in ``dtype`` (default: torch's default dtype), coupling constants exact."""
    model = MACE(hparams)
    model.to(dtype or torch.get_default_dtype())
    refresh_wigner_buffers(model)
    return model
