"""Load an ``mlip-convert to-mace`` export into mace-torch's own classes (run in a mace-torch 0.3.16 venv).

    mlip-convert to-mace model.pt -o exported/                       # in mlip's venv
    python scripts/mace_from_mlip_export.py exported/ --save my.model  # in the mace-torch venv
    python scripts/mace_from_mlip_export.py exported/ --eval s.xyz --outputs out.npz

Builds ``ScaleShiftMACE(**hyperparameters)`` (irreps strings -> ``o3.Irreps``, class and gate names ->
mace-torch's classes and ``torch.nn.functional`` gates), copies ``state_dict.npz`` into the model's
``state_dict`` (every exported key must exist there with the same number of elements), and loads it with
``load_state_dict(strict=True)``. Keys mace-torch computed itself from the arguments (e3nn masks, Bessel,
cutoff and covalent-radius buffers, e3nn's ``_w3j`` constants) are listed and must look like constants.
``--save`` writes ``torch.save(model)``, the ``.model`` file mace-torch's tools (LAMMPS export, calculator)
take. ``--eval`` writes energies, forces, node energies (with E0) and stress per head, computed by
mace-torch's own model on mace-torch's own neighbour lists. This script is not part of the mlip package.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch

_CONSTANT = re.compile(
    r"(output_mask|_w3j_|bessel_fn\.|cutoff_fn\.|covalent_radii|pair_repulsion_fn\.(c|p)$|^atomic_numbers$|^r_max$"
    r"|^num_interactions$|\.bias$|conv_tp\.weight$|_zeroed$)"
)


def build(folder: Path) -> torch.nn.Module:
    """``ScaleShiftMACE`` with the exported arguments and weights (float64)."""
    from e3nn import o3
    from mace.modules import blocks
    from mace.modules.models import ScaleShiftMACE

    torch.set_default_dtype(torch.float64)
    h = json.loads((folder / "hyperparameters.json").read_text())
    kw = {k: v for k, v in h.items() if k not in ("model_class", "mace_torch_version")}
    for key in ("hidden_irreps", "MLP_irreps", "edge_irreps"):
        if kw.get(key) is not None:
            kw[key] = o3.Irreps(kw[key])
    for key in ("interaction_cls", "interaction_cls_first"):
        kw[key] = getattr(blocks, kw[key])
    kw["gate"] = getattr(torch.nn.functional, kw["gate"])
    kw["atomic_energies"] = np.asarray(kw["atomic_energies"])
    kw["num_elements"] = len(kw["atomic_numbers"])
    model = ScaleShiftMACE(**kw)
    state = model.state_dict()
    with np.load(folder / "state_dict.npz") as z:
        for key in z.files:
            if key not in state or state[key].numel() != z[key].size:
                raise SystemExit(f"{key}: not in mace-torch's state dict, or a different size")
            state[key] = torch.as_tensor(z[key], dtype=state[key].dtype).reshape(state[key].shape)
        given = set(z.files)
    derived = sorted(k for k in state if k not in given)
    odd = [k for k in derived if not _CONSTANT.search(k) or (k.endswith(".bias") and state[k].numel())]
    if odd:
        raise SystemExit(f"not exported and not a constant: {odd[:5]}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def evaluate(model: torch.nn.Module, structures: Path, out: Path) -> None:
    """Per head: energy, forces, node_energy (with E0), stress, with mace-torch's calculator."""
    import ase.io
    from mace.calculators import MACECalculator

    frames = ase.io.read(structures, ":")
    heads = list(model.heads)
    e0 = model.atomic_energies_fn.atomic_energies.detach().numpy().reshape(len(heads), -1)
    zs = [int(z) for z in model.atomic_numbers]
    res = {}
    for hi, head in enumerate(heads):
        calc = MACECalculator(models=model, device="cpu", default_dtype="float64", head=head)
        energy, stress = [], []
        for i, a in enumerate(frames):
            a.info["head"] = head
            a.calc = calc
            energy.append(a.get_potential_energy())
            res[f"{head}/forces/{i}"] = a.get_forces()
            node = np.array(calc.results["node_energy"], dtype=np.float64)
            if not np.isclose(node.sum(), energy[-1], rtol=0, atol=1e-8):  # the calculator reports them without E0
                node = node + e0[hi][[zs.index(z) for z in a.numbers]]
            assert np.isclose(node.sum(), energy[-1], rtol=0, atol=1e-8)
            res[f"{head}/node_energy/{i}"] = node
            stress.append(a.get_stress(voigt=False) if a.pbc.any() else np.zeros((3, 3)))
            a.calc = None
        res[f"{head}/energy"], res[f"{head}/stress"] = np.array(energy), np.array(stress)
    np.savez(out, **res)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="output folder of mlip-convert to-mace")
    p.add_argument("--save", type=Path, help="write torch.save(model) here (a mace-torch .model file)")
    p.add_argument("--eval", type=Path, help="structures (extended XYZ) to evaluate")
    p.add_argument("--outputs", type=Path, help="NPZ of the evaluation (with --eval)")
    args = p.parse_args()
    model = build(args.folder)
    if args.save:
        torch.save(model, args.save)
    if args.eval:
        evaluate(model, args.eval, args.outputs or args.folder / "outputs.npz")
    print(f"loaded into {type(model).__name__}: heads {list(model.heads)}")


if __name__ == "__main__":
    main()
