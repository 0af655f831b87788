"""Edge-energy readout (E3D, Hattori et al.): the interaction energy as a sum over directed edges.

For a directed edge ``j -> i`` (sender ``j``, receiver ``i``) at distance ``r_ij``::

    eps_ij = MLP_head([s_i, s_j, e_ij]) * f(r_ij)

with ``s`` the invariant (``0e``) node features of every layer concatenated (the model's
``node_feats``), ``e_ij`` the radial edge features of the model and ``f`` its polynomial envelope, so
``eps_ij = 0`` for ``r_ij >= r_max``. The MLP is ``Linear -> SiLU -> Linear -> SiLU -> Linear`` with
biases and one output per head; each edge takes the output of its receiver's head.

Exact by construction: ``E - sum_i E0_i = scale * sum_ij eps_ij`` (+ ZBL, which the model adds to its
own edges). There is no per-atom shift in this mode (an isolated atom must have zero interaction
energy); the training-set shift only initialises the output bias (see :meth:`init_bias`).
"""

from __future__ import annotations

import torch

DEFAULT_HIDDEN = (64, 64)


class EdgeEnergyReadout(torch.nn.Module):
    """``forward(node_scalars [N,F], edge_feats [E,R], envelope [E,1], edge_index [2,E], edge_head [E]) -> [E]``.

    Returns the (unscaled) energy of each directed edge in eV; ``edge_index[1]`` is the receiver ``i``.
    """

    def __init__(self, num_scalars: int, num_radial: int, num_heads: int, hidden: tuple[int, ...] = DEFAULT_HIDDEN):
        super().__init__()
        sizes = [2 * num_scalars + num_radial, *hidden, num_heads]
        layers: list[torch.nn.Module] = []
        for k in range(1, len(sizes)):
            layers.append(torch.nn.Linear(sizes[k - 1], sizes[k]))
            if k < len(sizes) - 1:
                layers.append(torch.nn.SiLU())
        self.mlp = torch.nn.Sequential(*layers)

    def init_bias(self, value: float) -> None:
        """Set the output bias (all heads) to ``value`` eV, e.g. ``shift / (scale * avg_num_neighbors)``."""
        with torch.no_grad():
            self.mlp[-1].bias.fill_(value)

    def forward(
        self,
        node_scalars: torch.Tensor,
        edge_feats: torch.Tensor,
        envelope: torch.Tensor,
        edge_index: torch.Tensor,
        edge_head: torch.Tensor,
    ) -> torch.Tensor:
        sender, receiver = edge_index[0], edge_index[1]
        x = torch.cat([node_scalars[receiver], node_scalars[sender], edge_feats], dim=-1)
        out = self.mlp(x).gather(1, edge_head.unsqueeze(-1)).squeeze(-1)
        return out * envelope.reshape(-1)
