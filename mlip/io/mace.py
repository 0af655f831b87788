"""Import mace-torch models (hyper-parameters JSON + state-dict NPZ, or a ``.model`` file read safely).

Conventions mapped on import (see docs/model.md):

* Tensor-product paths: e3nn 0.4.4's ``wigner_3j`` (used by mace-torch) differs in sign from e3nn 0.6's for
  some paths with odd ``l1 + l2 + l3`` ((1,2,2), (2,1,2), (2,2,1), (1,3,3), (3,1,3), (3,3,1), ... but not
  (1,1,1) or (2,2,3)). The relative sign is measured against a stored 0.4.4 reference table, and the
  radial-MLP outputs that weight the flipped paths are negated.
* Symmetric-contraction weights are given in mace's ``U_matrix_*`` bases; we solve
  ``sym(U_mace) = U_ours T`` by least squares (residual checked < 1e-10) and use ``W_ours = T W_mace``.
* Interaction classes map to ``interaction`` kinds; per-head E0s and scale/shift come from the state dict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from e3nn import o3

from mlip.errors import ConfigError, ModelFileError
from mlip.nn.coupling import basis_transform
from mlip.nn.hparams import ModelHyperparameters
from mlip.nn.interaction import NonLinearInteraction
from mlip.nn.model import MACE, build_model

INTERACTION_CLASSES = {
    "RealAgnosticResidualInteractionBlock": "residual",
    "RealAgnosticInteractionBlock": "plain",
    "RealAgnosticDensityInteractionBlock": "density",
    "RealAgnosticDensityResidualInteractionBlock": "density_residual",
    "RealAgnosticResidualNonLinearInteractionBlock": "nonlinear",
}

_BASIS_TOL = 1e-10
_BASIS_TOL_F32 = 1e-5  # U_matrix buffers of float32 files carry float32 rounding

# e3nn 0.4.4 (mace-torch's pin) wigner_3j(l1, l2, l3): (flat index of the first entry with |C| > 1e-6, its sign).
# Measured with e3nn 0.4.4; comparing with the installed e3nn gives the relative phase of every path.
_W3J_044_REFERENCE: dict[tuple[int, int, int], tuple[int, int]] = {
    (0, 0, 0): (0, 1),
    (0, 1, 1): (0, 1),
    (0, 2, 2): (0, 1),
    (0, 3, 3): (0, 1),
    (0, 4, 4): (0, 1),
    (1, 0, 1): (0, 1),
    (1, 1, 0): (0, 1),
    (1, 1, 1): (5, 1),
    (1, 1, 2): (2, -1),
    (1, 2, 1): (2, 1),
    (1, 2, 2): (1, 1),
    (1, 2, 3): (4, -1),
    (1, 3, 2): (4, 1),
    (1, 3, 3): (1, 1),
    (1, 3, 4): (6, -1),
    (1, 4, 3): (6, 1),
    (1, 4, 4): (1, 1),
    (2, 0, 2): (0, 1),
    (2, 1, 1): (2, 1),
    (2, 1, 2): (1, -1),
    (2, 1, 3): (4, -1),
    (2, 2, 0): (0, 1),
    (2, 2, 1): (3, 1),
    (2, 2, 2): (2, -1),
    (2, 2, 3): (7, 1),
    (2, 2, 4): (4, 1),
    (2, 3, 1): (2, 1),
    (2, 3, 2): (1, -1),
    (2, 3, 3): (4, -1),
    (2, 3, 4): (3, 1),
    (2, 4, 2): (4, 1),
    (2, 4, 3): (1, -1),
    (2, 4, 4): (6, -1),
    (3, 0, 3): (0, 1),
    (3, 1, 2): (4, 1),
    (3, 1, 3): (1, -1),
    (3, 1, 4): (6, -1),
    (3, 2, 1): (2, 1),
    (3, 2, 2): (1, 1),
    (3, 2, 3): (4, -1),
    (3, 2, 4): (3, -1),
    (3, 3, 0): (0, 1),
    (3, 3, 1): (3, 1),
    (3, 3, 2): (2, -1),
    (3, 3, 3): (9, 1),
    (3, 3, 4): (4, 1),
    (3, 4, 1): (2, 1),
    (3, 4, 2): (1, -1),
    (3, 4, 3): (4, -1),
    (3, 4, 4): (3, 1),
    (4, 0, 4): (0, 1),
    (4, 1, 3): (6, 1),
    (4, 1, 4): (1, -1),
    (4, 2, 2): (4, 1),
    (4, 2, 3): (1, 1),
    (4, 2, 4): (6, -1),
    (4, 3, 1): (2, 1),
    (4, 3, 2): (1, 1),
    (4, 3, 3): (4, -1),
    (4, 3, 4): (3, -1),
    (4, 4, 0): (0, 1),
    (4, 4, 1): (3, 1),
    (4, 4, 2): (2, -1),
    (4, 4, 3): (9, 1),
    (4, 4, 4): (4, 1),
}


def e3nn044_relative_sign(l1: int, l2: int, l3: int) -> int:
    """+1 or -1: installed e3nn's ``wigner_3j(l1, l2, l3)`` relative to e3nn 0.4.4's (both unit norm)."""
    key = (l1, l2, l3)
    if key not in _W3J_044_REFERENCE:
        raise ConfigError(f"no e3nn 0.4.4 phase reference for the coupling path {key} (l <= 4 supported)")
    index, sign = _W3J_044_REFERENCE[key]
    current = float(o3.wigner_3j(l1, l2, l3, dtype=torch.float64).flatten()[index])
    if abs(current) < 1e-6:
        raise ConfigError(f"unexpected e3nn wigner_3j{key}: cannot determine its phase")
    return 1 if (current > 0) == (sign > 0) else -1


def _class_name(value: Any) -> str:
    name = str(value)
    for key in INTERACTION_CLASSES:
        if key in name:
            return key
    raise ConfigError(f"unsupported mace interaction class {name!r}")


def _per_head(value: Any, n: int) -> list[float]:
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64)).reshape(-1)
    if arr.size == 1:
        return [float(arr[0])] * n
    return [float(v) for v in arr]


_UNSUPPORTED = {  # mace-torch options we do not implement, with their neutral values
    "use_so3": False,
    "use_last_readout_only": False,
    "use_embedding_readout": False,
    "use_edge_irreps_first": False,
    "keep_last_layer_irreps": False,
    "embedding_specs": None,
    "radial_type": "bessel",
}


def _gate_name(gate: Any) -> str:
    if gate is None:
        return "none"
    name = getattr(gate, "__name__", str(gate)).lower()
    for known in ("silu", "tanh"):
        if known in name:
            return known
    raise ConfigError(f"unsupported mace gate {gate!r}")


def hparams_from_mace(h: dict[str, Any], state: dict[str, np.ndarray]) -> ModelHyperparameters:
    """Translate mace-torch constructor arguments (+ the state dict for E0s/scale/shift)."""
    for key, neutral in _UNSUPPORTED.items():
        if key in h and h[key] not in (neutral, None) and not (neutral is None and not h[key]):
            raise ConfigError(f"unsupported mace option {key}={h[key]!r}")
    if "readout_cls" in h and "NonLinearReadoutBlock" not in str(h["readout_cls"]) or "NonLinearBias" in str(h.get("readout_cls", "")):
        raise ConfigError(f"unsupported mace readout {h['readout_cls']!r}")
    heads = list(h.get("heads") or ["Default"])
    H = len(heads)
    Z = [int(z) for z in np.asarray(h["atomic_numbers"]).reshape(-1)]
    e0 = np.asarray(state.get("atomic_energies_fn.atomic_energies", h.get("atomic_energies")), dtype=np.float64)
    e0 = np.atleast_2d(e0).reshape(H, len(Z))
    scale = state.get("scale_shift.scale", h.get("atomic_inter_scale", 1.0))
    shift = state.get("scale_shift.shift", h.get("atomic_inter_shift", 0.0))
    if h.get("model_class", "ScaleShiftMACE") == "MACE" and "scale_shift.scale" not in state:
        scale, shift = 1.0, 0.0
    corr = h.get("correlation", 3)
    dt = h.get("distance_transform")
    if dt in (None, "None"):
        dt = None
    elif str(dt).lower() == "agnesi":
        dt = "agnesi"
    else:
        raise ConfigError(f"unsupported mace distance_transform {dt!r}")
    edge_irreps = h.get("edge_irreps")
    return ModelHyperparameters(
        atomic_numbers=Z,
        heads=heads,
        atomic_energies=e0.tolist(),
        scale=_per_head(scale, H),
        shift=_per_head(shift, H),
        avg_num_neighbors=float(h["avg_num_neighbors"]),
        r_max=float(h["r_max"]),
        num_bessel=int(h["num_bessel"]),
        num_polynomial_cutoff=int(h["num_polynomial_cutoff"]),
        max_ell=int(h["max_ell"]),
        hidden_irreps=str(h["hidden_irreps"]),
        num_interactions=int(h["num_interactions"]),
        correlation=[int(c) for c in corr] if isinstance(corr, list) else int(corr),
        radial_mlp=[int(x) for x in h.get("radial_MLP", [64, 64, 64])],
        mlp_irreps=str(h.get("MLP_irreps", "16x0e")),
        gate=_gate_name(h.get("gate", "silu")),
        interaction=INTERACTION_CLASSES[_class_name(h["interaction_cls"])],
        interaction_first=INTERACTION_CLASSES[_class_name(h["interaction_cls_first"])],
        edge_irreps=None if edge_irreps in (None, "None") else str(edge_irreps),
        use_agnostic_product=bool(h.get("use_agnostic_product", False)),
        apply_cutoff=bool(h.get("apply_cutoff", True)),
        pair_repulsion=bool(h.get("pair_repulsion", False)),
        distance_transform=dt,
    )


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


def load_mace_state(model: MACE, state: dict[str, np.ndarray]) -> None:
    """Copy mace-torch weights into ``model`` (built from :func:`hparams_from_mace`), mapping conventions."""
    new: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in state:
            raise ModelFileError(f"mace state dict: missing key '{key}'")
        used.add(key)
        return _t(state[key])

    new["node_embedding.weight"] = take("node_embedding.linear.weight")
    for t, inter in enumerate(model.interactions):
        p = f"interactions.{t}."
        flips = [sl for (l1, l2, l3), sl in inter.conv.path_slices() if e3nn044_relative_sign(l1, l2, l3) < 0]
        new[p + "linear_up.weight"] = take(p + "linear_up.weight")
        if isinstance(inter, NonLinearInteraction):
            for name in ("source_embedding", "target_embedding", "linear_res", "linear_1", "linear_2", "skip"):
                src = "skip_tp" if name == "skip" else name
                new[p + f"{name}.weight"] = take(p + f"{src}.weight")
            new[p + "alpha"] = take(p + "alpha")
            new[p + "beta"] = take(p + "beta")
            lin_ids = [i for i, m in enumerate(inter.radial.net) if isinstance(m, torch.nn.Linear | torch.nn.LayerNorm)]
            for i in lin_ids:
                for kind in ("weight", "bias"):
                    new[p + f"radial.net.{i}.{kind}"] = take(p + f"conv_tp_weights.net.{i}.{kind}").clone()
            last = lin_ids[-1]
            for s in flips:
                new[p + f"radial.net.{last}.weight"][s] *= -1
                new[p + f"radial.net.{last}.bias"][s] *= -1
            for i, m in enumerate(inter.density.net):
                if isinstance(m, torch.nn.Linear | torch.nn.LayerNorm):
                    for kind in ("weight", "bias"):
                        new[p + f"density.net.{i}.{kind}"] = take(p + f"density_fn.net.{i}.{kind}")
        else:
            new[p + "linear.weight"] = take(p + "linear.weight")
            new[p + "skip.tp.weight"] = take(p + "skip_tp.weight")
            n_layers = len([k for k in state if k.startswith(p + "conv_tp_weights.layer")])
            for i in range(n_layers):
                new[p + f"radial.layer{i}.weight"] = take(p + f"conv_tp_weights.layer{i}.weight").clone()
            last = p + f"radial.layer{n_layers - 1}.weight"
            for s in flips:
                new[last][:, s] *= -1
            if inter.density is not None:
                new[p + "density.layer0.weight"] = take(p + "density_fn.layer0.weight")
    for t, prod in enumerate(model.products):
        p = f"products.{t}."
        sc = prod.contraction
        for o in range(len(sc.irreps_out)):
            q = p + f"symmetric_contractions.contractions.{o}."
            for nu in range(1, sc.correlation + 1):
                key = q + ("weights_max" if nu == sc.correlation else f"weights.{sc.correlation - 1 - nu}")
                W = take(key)  # [E, P_mace, C]
                U_m = take(q + f"U_matrix_{nu}")
                T, resid = basis_transform(sc.basis(o, nu), U_m, nu)
                tol = _BASIS_TOL if state[q + f"U_matrix_{nu}"].dtype != np.float32 else _BASIS_TOL_F32
                if resid > tol:
                    raise ModelFileError(f"mace symmetric contraction {q}U_matrix_{nu}: basis mismatch {resid:.2e}")
                new[p + f"contraction.weights.{o * sc.correlation + nu - 1}"] = torch.einsum("qp,epc->eqc", T, W)
        new[p + "linear.weight"] = take(p + "linear.weight")
    for t, ro in enumerate(model.readouts):
        p = f"readouts.{t}."
        if hasattr(ro, "linear_1"):
            new[p + "linear_1.weight"] = take(p + "linear_1.weight")
            new[p + "linear_2.weight"] = take(p + "linear_2.weight")
        else:
            new[p + "linear.weight"] = take(p + "linear.weight")
    # constants: check they match what our modules use
    _check_constants(model, state)
    own = model.state_dict()
    for k, v in new.items():
        if k not in own:
            raise ModelFileError(f"internal mapping error: no parameter '{k}'")
        if own[k].shape != v.shape:
            raise ModelFileError(f"mace state dict: '{k}' has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
        own[k] = v.to(own[k].dtype)
    model.load_state_dict(own)


def _check_constants(model: MACE, state: dict[str, np.ndarray]) -> None:
    """Adopt mace's constants that our modules hold as plain numbers (Agnesi, ZBL), verify the rest."""
    bw = state.get("radial_embedding.bessel_fn.bessel_weights")
    rtol = 1e-12 if bw is None or bw.dtype != np.float32 else 1e-6  # float32 files: constants rounded
    if bw is not None and not np.allclose(bw, model.radial_embedding.bessel.frequencies.cpu().numpy(), rtol=rtol, atol=0):
        raise ModelFileError("mace state dict: trainable/modified Bessel frequencies are not supported")
    tr = model.radial_embedding.transform
    if tr is not None:
        for name in ("a", "q", "p"):
            key = f"radial_embedding.distance_transform.{name}"
            if key in state:
                getattr(tr, name).fill_(float(state[key]))
    if model.pair is not None:
        c = state.get("pair_repulsion_fn.c")
        if c is not None and not np.allclose(c, [0.1818, 0.5099, 0.2802, 0.02817], rtol=rtol, atol=0):
            raise ModelFileError("mace state dict: modified ZBL coefficients are not supported")
        if "pair_repulsion_fn.a_exp" in state:
            model.pair.a_exp.fill_(float(state["pair_repulsion_fn.a_exp"]))
            model.pair.a_prefactor.fill_(float(state["pair_repulsion_fn.a_prefactor"]))


def convert_mace(hyperparameters: dict[str, Any], state: dict[str, np.ndarray], dtype: torch.dtype = torch.float64) -> MACE:
    """Build the mlip model equivalent to a mace-torch model (float64 by default)."""
    hp = hparams_from_mace(hyperparameters, state)
    model = build_model(hp, dtype=torch.float64)
    load_mace_state(model, state)
    return model.to(dtype)


def convert_mace_files(hyperparameters: str | Path, state_dict: str | Path, dtype: torch.dtype = torch.float64) -> MACE:
    """:func:`convert_mace` from ``hyperparameters.json`` + ``state_dict.npz`` (no pickle)."""
    try:
        h = json.loads(Path(hyperparameters).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{hyperparameters}: cannot read mace hyper-parameters: {err}") from None
    try:
        with np.load(state_dict, allow_pickle=False) as z:
            state = {k: z[k] for k in z.files}
    except (OSError, ValueError) as err:
        raise ModelFileError(f"{state_dict}: cannot read state dict: {err}") from None
    return convert_mace(h, state, dtype)


def convert_mace_model_file(path: str | Path, dtype: torch.dtype | None = None) -> MACE:
    """Convert a mace-torch ``.model`` file without mace-torch and without running code from the file.

    The pickle is read by :mod:`mlip.io.mace_pickle` (inert records only); hyper-parameters and weights are
    rebuilt by :func:`mlip.io.mace_model.mace_config_from_file`. ``dtype=None`` keeps the file's dtype.
    """
    from mlip.io.mace_model import file_dtype, mace_config_from_file

    h, state = mace_config_from_file(path)
    try:
        return convert_mace(h, state, file_dtype(state) if dtype is None else dtype)
    except (ConfigError, ModelFileError, KeyError, ValueError, TypeError) as err:
        raise ModelFileError(f"{path}: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}") from None


def load_model_or_mace(path: str | Path, dtype: torch.dtype | None = None) -> MACE:
    """An mlip model file, or a mace-torch ``.model`` (recognised by its content, whatever the suffix)
    converted on the fly by the safe reader (:func:`convert_mace_model_file`). Returned in eval mode."""
    from mlip.io.mace_pickle import is_mace_model_file
    from mlip.io.model_file import load_model

    if is_mace_model_file(path):
        return convert_mace_model_file(path, dtype=dtype).eval()
    return load_model(path, dtype=dtype)
