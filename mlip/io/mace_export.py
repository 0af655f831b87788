"""Export an mlip model to mace-torch: constructor arguments (JSON) + state dict (NPZ), the inverse of the import.

``mlip-convert to-mace model.pt -o DIR`` writes ``DIR/hyperparameters.json`` and ``DIR/state_dict.npz``.
mace-torch 0.3.16 builds ``ScaleShiftMACE`` from the JSON and loads the NPZ into it
(``scripts/mace_from_mlip_export.py``, run in a mace-torch venv, does both and can save a ``.model``).

Inverse conventions (see :mod:`mlip.io.mace`):

* radial-MLP outputs weighting tensor-product paths whose e3nn 0.4.4 coupling has the opposite sign are
  negated again (the same involution as on import);
* symmetric-contraction weights stay in mlip's coupling basis, and the ``U_matrix_*`` buffers carry that
  basis in mace's layout (``[M, K.., P]``, no ``M`` axis for scalar outputs); mace's buffers have more
  columns (its basis is not symmetrised), the extra columns and their weights are written as zeros. The
  contraction multiplies the same features ``nu`` times, so only the symmetric part of ``U`` enters and
  the function is unchanged;
* constants mace derives from the constructor arguments (e3nn masks, Bessel/cutoff buffers, covalent
  radii, e3nn's ``_w3j`` constants) are not written; Agnesi and ZBL parameters are.

Architectures mace-torch cannot express (E3D edge-energy readout, the cueq backend, a readout gate other
than silu/tanh, an interaction kind mace does not have) are refused with one line.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlip.errors import ModelFileError
from mlip.files import atomic_write_bytes, atomic_write_text
from mlip.io.mace import INTERACTION_CLASSES, e3nn044_relative_sign
from mlip.nn.interaction import NonLinearInteraction
from mlip.nn.model import MACE

_CLASS_OF_KIND = {kind: name for name, kind in INTERACTION_CLASSES.items()}
MACE_VERSION = "0.3.16"


def mace_hyperparameters(model: MACE) -> dict[str, Any]:
    """mace-torch ``ScaleShiftMACE`` constructor arguments (JSON-serialisable) of ``model``."""
    hp = model.hparams
    if hp.edge_energy_readout:
        raise ModelFileError("to-mace: the E3D edge-energy readout has no mace-torch equivalent")
    if hp.backend != "e3nn":
        raise ModelFileError(f"to-mace: backend '{hp.backend}': convert to e3nn first (mlip-convert backend --backend e3nn)")
    if hp.gate not in ("silu", "tanh"):
        raise ModelFileError(f"to-mace: readout gate '{hp.gate}' has no mace-torch equivalent (silu, tanh)")
    for kind in (hp.interaction, hp.interaction_first):
        if kind not in _CLASS_OF_KIND:
            raise ModelFileError(f"to-mace: interaction '{kind}' has no mace-torch equivalent")
    H = len(hp.heads)
    e0 = model.atomic_energies.detach().cpu().double().numpy()
    scale = model.scale.detach().cpu().double().numpy().tolist()
    shift = model.shift.detach().cpu().double().numpy().tolist()
    return {
        "model_class": "ScaleShiftMACE",
        "atomic_numbers": [int(z) for z in hp.atomic_numbers],
        "atomic_energies": e0.tolist() if H > 1 else e0[0].tolist(),
        "gate": hp.gate,
        "r_max": float(hp.r_max),
        "num_bessel": int(hp.num_bessel),
        "num_polynomial_cutoff": int(hp.num_polynomial_cutoff),
        "max_ell": int(hp.max_ell),
        "interaction_cls": _CLASS_OF_KIND[hp.interaction],
        "interaction_cls_first": _CLASS_OF_KIND[hp.interaction_first],
        "num_interactions": int(hp.num_interactions),
        "hidden_irreps": str(hp.hidden_irreps),
        "MLP_irreps": str(hp.mlp_irreps),
        "edge_irreps": hp.edge_irreps,
        "use_agnostic_product": bool(hp.use_agnostic_product),
        "apply_cutoff": bool(hp.apply_cutoff),
        "avg_num_neighbors": float(hp.avg_num_neighbors),
        "correlation": hp.correlation,
        "radial_MLP": [int(x) for x in hp.radial_mlp],
        "pair_repulsion": bool(hp.pair_repulsion),
        "distance_transform": "Agnesi" if hp.distance_transform == "agnesi" else "None",
        "atomic_inter_scale": scale if H > 1 else scale[0],
        "atomic_inter_shift": shift if H > 1 else shift[0],
        "heads": list(hp.heads),
        "mace_torch_version": MACE_VERSION,
    }


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy().copy()


def _interaction_state(t: int, inter: torch.nn.Module, own: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    p = f"interactions.{t}."
    out = {p + "linear_up.weight": _np(own[p + "linear_up.weight"])}
    flips = [sl for (l1, l2, l3), sl in inter.conv.path_slices() if e3nn044_relative_sign(l1, l2, l3) < 0]
    if isinstance(inter, NonLinearInteraction):
        for name in ("source_embedding", "target_embedding", "linear_res", "linear_1", "linear_2", "skip"):
            out[p + ("skip_tp" if name == "skip" else name) + ".weight"] = _np(own[p + f"{name}.weight"])
        out[p + "alpha"], out[p + "beta"] = _np(own[p + "alpha"]), _np(own[p + "beta"])
        lin = [i for i, m in enumerate(inter.radial.net) if isinstance(m, torch.nn.Linear | torch.nn.LayerNorm)]
        for i in lin:
            for kind in ("weight", "bias"):
                out[p + f"conv_tp_weights.net.{i}.{kind}"] = _np(own[p + f"radial.net.{i}.{kind}"])
        for s in flips:
            out[p + f"conv_tp_weights.net.{lin[-1]}.weight"][s] *= -1
            out[p + f"conv_tp_weights.net.{lin[-1]}.bias"][s] *= -1
        for i, m in enumerate(inter.density.net):
            if isinstance(m, torch.nn.Linear | torch.nn.LayerNorm):
                for kind in ("weight", "bias"):
                    out[p + f"density_fn.net.{i}.{kind}"] = _np(own[p + f"density.net.{i}.{kind}"])
        return out
    out[p + "linear.weight"] = _np(own[p + "linear.weight"])
    out[p + "skip_tp.weight"] = _np(own[p + "skip.tp.weight"])
    n_layers = len([k for k in own if k.startswith(p + "radial.layer")])
    for i in range(n_layers):
        out[p + f"conv_tp_weights.layer{i}.weight"] = _np(own[p + f"radial.layer{i}.weight"])
    for s in flips:
        out[p + f"conv_tp_weights.layer{n_layers - 1}.weight"][:, s] *= -1
    if inter.density is not None:
        out[p + "density_fn.layer0.weight"] = _np(own[p + "density.layer0.weight"])
    return out


def _product_state(t: int, prod: torch.nn.Module, own: dict[str, torch.Tensor], mace_p: dict) -> dict[str, np.ndarray]:
    """Contraction weights in mlip's basis + that basis as mace's ``U_matrix`` buffers (zero-padded to
    ``mace_p[(o, nu)]`` columns when given, the column count of mace's own basis)."""
    p = f"products.{t}."
    sc = prod.contraction
    out = {p + "linear.weight": _np(own[p + "linear.weight"])}
    for o in range(len(sc.irreps_out)):
        q = p + f"symmetric_contractions.contractions.{o}."
        scalar_out = sc.irreps_out[o][1].l == 0
        for nu in range(1, sc.correlation + 1):
            U = sc.basis(o, nu).detach().cpu().double()
            if scalar_out and U.dim() == nu + 2:
                U = U[0]
            W = own[p + f"contraction.weights.{o * sc.correlation + nu - 1}"].detach().cpu().double()
            P = mace_p.get((t, o, nu), U.shape[-1])
            if P < U.shape[-1]:
                raise ModelFileError(f"to-mace: {q}U_matrix_{nu} has {P} columns in mace, mlip's basis {U.shape[-1]}")
            U = torch.cat([U, U.new_zeros(*U.shape[:-1], P - U.shape[-1])], dim=-1)
            W = torch.cat([W, W.new_zeros(W.shape[0], P - W.shape[1], W.shape[2])], dim=1)
            key = q + ("weights_max" if nu == sc.correlation else f"weights.{sc.correlation - 1 - nu}")
            out[key], out[q + f"U_matrix_{nu}"] = W.numpy(), U.numpy()
    return out


def mace_state_dict(model: MACE, mace_columns: dict | None = None) -> dict[str, np.ndarray]:
    """The mace-torch state dict (float64 arrays, mace key names) of ``model``; constants are left out."""
    own = model.state_dict()
    H = len(model.heads)
    out: dict[str, np.ndarray] = {"node_embedding.linear.weight": _np(own["node_embedding.weight"])}
    for t, inter in enumerate(model.interactions):
        out.update(_interaction_state(t, inter, own))
    for t, prod in enumerate(model.products):
        out.update(_product_state(t, prod, own, mace_columns or {}))
    for t, ro in enumerate(model.readouts):
        names = ("linear_1", "linear_2") if hasattr(ro, "linear_1") else ("linear",)
        for name in names:
            out[f"readouts.{t}.{name}.weight"] = _np(own[f"readouts.{t}.{name}.weight"])
    e0 = _np(model.atomic_energies)
    out["atomic_energies_fn.atomic_energies"] = e0 if H > 1 else e0[0]
    scale, shift = _np(model.scale), _np(model.shift)
    out["scale_shift.scale"] = scale if H > 1 else scale.reshape(())
    out["scale_shift.shift"] = shift if H > 1 else shift.reshape(())
    tr = model.radial_embedding.transform
    if tr is not None:
        for name in ("a", "q", "p"):
            out[f"radial_embedding.distance_transform.{name}"] = _np(getattr(tr, name)).reshape(())
    if model.pair is not None:
        out["pair_repulsion_fn.a_exp"] = _np(model.pair.a_exp).reshape(())
        out["pair_repulsion_fn.a_prefactor"] = _np(model.pair.a_prefactor).reshape(())
    return out


def _mace_columns(model: MACE) -> dict[tuple[int, int, int], int]:
    """Column count of mace-torch 0.3.16's ``U_matrix`` per (product, output irrep, order).

    mace's basis is not symmetrised: its columns are the coupling paths of ``nu`` features in sequence.
    Counted here from the irreps with e3nn's selection rules (no mace code): the number of ways to couple
    ``nu`` copies of the contraction's coupling irreps, one after the other, to the output irrep. Checked
    against the ``U_matrix`` shapes of the mace-torch 0.3.16 fixtures (tests/fixtures/mace).
    """
    from e3nn import o3

    out: dict[tuple[int, int, int], int] = {}
    for t, prod in enumerate(model.products):
        sc = prod.contraction
        coupling = o3.Irreps(sc.coupling_irreps) if not isinstance(sc.coupling_irreps, o3.Irreps) else sc.coupling_irreps
        for o, (_, ir_out) in enumerate(sc.irreps_out):
            paths = {o3.Irrep("0e"): 1}
            for nu in range(1, sc.correlation + 1):
                new: dict[o3.Irrep, int] = {}
                for ir, n in paths.items():
                    for _, ir_in in coupling:
                        for ir_c in ir * ir_in:
                            new[ir_c] = new.get(ir_c, 0) + n
                paths = new
                out[(t, o, nu)] = paths.get(ir_out, 0)
    return out


def export_mace(model: MACE, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``hyperparameters.json`` and ``state_dict.npz`` for mace-torch into ``out_dir`` (atomically)."""
    hp = mace_hyperparameters(model)
    state = mace_state_dict(model, _mace_columns(model))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (out_dir / "hyperparameters.json", out_dir / "state_dict.npz")
    atomic_write_text(paths[0], json.dumps(hp, indent=1))
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    atomic_write_bytes(paths[1], buffer.getvalue())
    return paths
