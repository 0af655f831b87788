"""mace-torch ``.model`` files -> mace-torch constructor arguments + state dict, from inert records only.

:func:`mace_config_from_file` reads the file with :mod:`mlip.io.mace_pickle` (nothing from the file runs),
checks that every module in the pickled tree is one this importer knows, and rebuilds what mace-torch's
constructor was given (``hidden_irreps``, ``interaction_cls``, ``correlation``, heads, ``MLP_irreps``,
ZBL/Agnesi, ...) from the modules' pickled attributes. The result feeds :func:`mlip.io.mace.convert_mace`,
exactly like the ``--hyperparameters/--state-dict`` route.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlip.errors import ModelFileError
from mlip.io.mace_pickle import Record, module_state_dict, read_mace_model_file

MODEL_CLASSES = ("ScaleShiftMACE", "MACE")
INTERACTIONS = (
    "RealAgnosticResidualInteractionBlock",
    "RealAgnosticInteractionBlock",
    "RealAgnosticDensityInteractionBlock",
    "RealAgnosticDensityResidualInteractionBlock",
    "RealAgnosticResidualNonLinearInteractionBlock",
)
# every module class the importer understands (mace-torch 0.3.6 - 0.3.16 with e3nn 0.4.4)
KNOWN_MODULES = frozenset(
    MODEL_CLASSES
    + INTERACTIONS
    + (
        "LinearNodeEmbeddingBlock", "RadialEmbeddingBlock", "BesselBasis", "PolynomialCutoff", "AgnesiTransform",
        "ZBLBasis", "AtomicEnergiesBlock", "ScaleShiftBlock", "LinearReadoutBlock", "NonLinearReadoutBlock",
        "EquivariantProductBasisBlock", "SymmetricContraction", "Contraction", "reshape_irreps",
        "GatedEquivariantBlock", "RadialMLP",
        # e3nn 0.4.4
        "Linear", "TensorProduct", "FullyConnectedTensorProduct", "SphericalHarmonics", "FullyConnectedNet",
        "_Layer", "Activation", "normalize2mom", "Gate", "_Sortcut", "Extract", "Identity",
        # torch.nn / torch.fx
        "ModuleList", "ParameterList", "Sequential", "LayerNorm", "SiLU", "reduce_graph_module",
    )
)
_ROOT_CHILDREN = {
    "node_embedding", "radial_embedding", "spherical_harmonics", "atomic_energies_fn", "interactions",
    "products", "readouts", "scale_shift", "pair_repulsion_fn",
}
_KNOWN_PREFIXES = ("mace.", "e3nn.", "torch.nn.", "torch.fx.")


def _modules(rec: Record) -> dict[str, Any]:
    st = rec.state if isinstance(rec.state, dict) else {}
    return dict(st.get("_modules") or {})


def check_known_modules(rec: Record, path: str, where: str = "model") -> None:
    """Refuse (one line, naming it) any module class in the tree that the importer does not know."""
    if rec.cls_name not in KNOWN_MODULES or not rec.qualname.startswith(_KNOWN_PREFIXES):
        raise ModelFileError(f"{path}: unsupported mace construct '{rec.qualname}' at '{where}'")
    for name, sub in _modules(rec).items():
        if isinstance(sub, Record):
            check_known_modules(sub, path, f"{where}.{name}")
        elif sub is not None:
            raise ModelFileError(f"{path}: unsupported object {type(sub).__name__} at '{where}.{name}'")


def irreps_str(value: Any) -> str:
    """An e3nn ``Irreps`` record (or a string) as text, e.g. ``"16x0e + 16x1o"``."""
    if isinstance(value, str):
        return value
    if not (isinstance(value, Record) and value.cls_name == "Irreps" and value.args):
        raise ModelFileError(f"mace .model: expected e3nn Irreps, found {value!r}")
    parts = []
    for mul_ir in value.args[0]:
        mul, ir = mul_ir.args[0] if isinstance(mul_ir, Record) else mul_ir
        lp = ir.args[0] if isinstance(ir, Record) else ir
        l, p = int(lp[0]), int(lp[1])
        parts.append(f"{int(mul)}x{l}{'e' if p == 1 else 'o'}")
    return " + ".join(parts)


def _max_l(irreps: str) -> int:
    return max(int(term.strip().split("x")[1][:-1]) for term in irreps.split("+"))


def _function_name(value: Any) -> str:
    if isinstance(value, type) and issubclass(value, Record):
        return value.qualname
    if isinstance(value, Record):
        if value.cls_name == "normalize2mom":
            return _function_name(value.attr("f", None) or (value.args[0] if value.args else None))
        return value.qualname
    return str(value)


def _gate(readout: Record) -> str | None:
    if readout.cls_name != "NonLinearReadoutBlock":
        return "silu"
    acts = readout.attr("non_linearity").attr("acts", None)
    lst = _modules(acts) if isinstance(acts, Record) else {}
    if not lst:
        return None
    name = _function_name(next(iter(lst.values()))).rsplit(".", 1)[-1]
    return name if name in ("silu", "tanh") else f"unsupported:{name}"


def _mlp_irreps(readout: Record, n_heads: int) -> str:
    if readout.cls_name != "NonLinearReadoutBlock":
        return "16x0e"
    hidden = irreps_str(readout.attr("hidden_irreps", None) or readout.attr("linear_1").attr("irreps_out"))
    mul, ir = hidden.split("+")[0].strip().split("x")
    if int(mul) % n_heads:
        raise ModelFileError(f"mace .model: readout width {mul} is not a multiple of the {n_heads} heads")
    return f"{int(mul) // n_heads}x{ir}"


def _interaction_hparams(inters: list[Record]) -> dict[str, Any]:
    first = inters[0]
    radial = first.attr("conv_tp_weights")
    hs = radial.attr("hs")  # RadialMLP and e3nn's FullyConnectedNet both keep the layer widths
    hidden = first.attr("hidden_irreps", None)
    return {
        "interaction_cls": inters[1].cls_name if len(inters) > 1 else first.cls_name,
        "interaction_cls_first": first.cls_name,
        "avg_num_neighbors": float(first.attr("avg_num_neighbors")),
        "radial_MLP": [int(x) for x in list(hs)[1:-1]],
        "hidden_irreps": None if hidden is None else irreps_str(hidden),
    }


def _radial_hparams(root: Record, state: dict[str, np.ndarray]) -> dict[str, Any]:
    emb = root.attr("radial_embedding")
    transform = emb.attr("distance_transform", None)
    if transform is not None and transform.cls_name != "AgnesiTransform":
        raise ModelFileError(f"mace .model: unsupported distance transform '{transform.qualname}'")
    return {
        "r_max": float(np.asarray(state["r_max"]).reshape(-1)[0]),
        "num_bessel": int(np.asarray(state["radial_embedding.bessel_fn.bessel_weights"]).size),
        "num_polynomial_cutoff": int(np.asarray(state["radial_embedding.cutoff_fn.p"]).reshape(-1)[0]),
        "apply_cutoff": bool(emb.attr("apply_cutoff", True)),
        "distance_transform": None if transform is None else "Agnesi",
        "pair_repulsion": "pair_repulsion_fn" in _modules(root),
    }


def mace_config_from_records(root: Record, path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(mace constructor arguments, state dict as arrays) from the unpickled root record."""
    if root.cls_name not in MODEL_CLASSES or not root.qualname.startswith("mace."):
        raise ModelFileError(f"{path}: the file holds '{root.qualname}', not a mace-torch MACE/ScaleShiftMACE model")
    check_known_modules(root, path)
    extra = sorted(set(_modules(root)) - _ROOT_CHILDREN)
    if extra:
        raise ModelFileError(f"{path}: unsupported mace construct: model submodule '{extra[0]}'")
    state = {k: v.detach().cpu().numpy() for k, v in module_state_dict(root).items()}
    inters = list(_modules(root.attr("interactions")).values())
    products = list(_modules(root.attr("products")).values())
    readouts = list(_modules(root.attr("readouts")).values())
    heads = list(root.attr("heads", None) or ["Default"])
    corr = [int(_modules(_modules(p.attr("symmetric_contractions"))["contractions"])["0"].attr("correlation"))
            for p in products]
    h: dict[str, Any] = {
        "model_class": root.cls_name,
        "atomic_numbers": [int(z) for z in np.asarray(state["atomic_numbers"]).reshape(-1)],
        "num_interactions": int(np.asarray(state["num_interactions"]).reshape(-1)[0]),
        "max_ell": _max_l(irreps_str(root.attr("spherical_harmonics").attr("irreps_out"))),
        "correlation": corr[0] if len(set(corr)) == 1 else corr,
        "MLP_irreps": _mlp_irreps(readouts[-1], len(heads)),
        "gate": _gate(readouts[-1]),
        "heads": heads,
        "edge_irreps": None if root.attr("edge_irreps", None) is None else irreps_str(root.attr("edge_irreps")),
        "use_agnostic_product": bool(root.attr("use_agnostic_product", False)),
    }
    for key in ("use_so3", "use_last_readout_only", "use_edge_irreps_first", "use_embedding_readout"):
        h[key] = root.attr(key, False)
    h.update(_interaction_hparams(inters))
    if h["hidden_irreps"] is None:
        h["hidden_irreps"] = irreps_str(products[0].attr("linear").attr("irreps_out"))
    h.update(_radial_hparams(root, state))
    if str(h["gate"]).startswith("unsupported:"):
        raise ModelFileError(f"{path}: unsupported mace readout activation '{h['gate'][12:]}'")
    if readouts[-1].cls_name != "LinearReadoutBlock":
        h["readout_cls"] = readouts[-1].qualname
    return h, state


def mace_config_from_file(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a mace-torch ``.model`` safely: (constructor arguments, state dict as numpy arrays)."""
    root = read_mace_model_file(path)
    try:
        return mace_config_from_records(root, str(path))
    except ModelFileError as err:
        msg = str(err)
        raise ModelFileError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:  # a layout we do not know
        raise ModelFileError(f"{path}: unsupported mace .model layout ({type(err).__name__}: {err})") from None


def file_dtype(state: dict[str, np.ndarray]) -> torch.dtype:
    """float32 or float64: the dtype of the model's floating-point weights."""
    for key in ("node_embedding.linear.weight", "atomic_energies_fn.atomic_energies"):
        if key in state:
            return torch.float32 if state[key].dtype == np.float32 else torch.float64
    return torch.float64
