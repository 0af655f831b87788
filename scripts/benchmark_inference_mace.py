"""mace-torch side of scripts/benchmark_inference.py.

:func:`mace_worker` runs in the mace-torch venv (``benchmark_inference.py --mace-worker SPEC`` with that
venv's python); it imports mace, never mlip. It builds a ``ScaleShiftMACE`` with random weights from
the spec's hyper-parameters, writes them (JSON + npz, no pickle) for mlip's converter, and times
mace-torch eager and/or compiled (as ``MACECalculator(compile_mode="default")`` compiles).
:func:`run_mace_worker` is the caller's side.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from benchmark_inference_common import (
    MODEL_EXTRAS,
    MODELS,
    mace_hyperparameters,
    skipped,
    time_calls,
)


def mace_worker(spec_path: str) -> None:
    import torch
    from mace import data as mace_data
    from mace import modules
    from mace.tools import torch_geometric, utils

    spec = json.loads(Path(spec_path).read_text())
    out_dir = Path(spec["out_dir"])
    h = spec["hyperparameters"]
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec.get("seed", 0))
    torch.set_default_dtype(torch.float64)  # a worker process of its own: global dtype is fine here
    model = modules.ScaleShiftMACE(
        r_max=h["r_max"], num_bessel=h["num_bessel"], num_polynomial_cutoff=h["num_polynomial_cutoff"],
        max_ell=h["max_ell"], interaction_cls=modules.interaction_classes[h["interaction_cls"]],
        interaction_cls_first=modules.interaction_classes[h["interaction_cls_first"]],
        num_interactions=h["num_interactions"], num_elements=len(h["atomic_numbers"]),
        hidden_irreps=__import__("e3nn").o3.Irreps(h["hidden_irreps"]),
        MLP_irreps=__import__("e3nn").o3.Irreps(h["MLP_irreps"]),
        atomic_energies=np.array(h["atomic_energies"]), avg_num_neighbors=h["avg_num_neighbors"],
        atomic_numbers=h["atomic_numbers"], correlation=h["correlation"], gate=torch.nn.functional.silu,
        radial_MLP=h["radial_MLP"], atomic_inter_scale=h["atomic_inter_scale"],
        atomic_inter_shift=h["atomic_inter_shift"], heads=h["heads"],
        pair_repulsion=h.get("pair_repulsion", False), distance_transform=h.get("distance_transform"),
    )
    # random, non-trivial weights (readouts etc. start small): perturb every parameter
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    (out_dir / "hyperparameters.json").write_text(json.dumps(h, indent=1))
    np.savez(out_dir / "state_dict.npz", **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})

    import ase.io

    results = []
    device = spec["device"]
    z_table = utils.AtomicNumberTable(h["atomic_numbers"])
    for dtype_name, mode in [(d, m) for d in spec["dtypes"] for m in spec.get("mace_modes", ["eager"])]:
        dtype = getattr(torch, dtype_name)
        torch.set_default_dtype(dtype)
        m = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
        if mode == "compiled":  # as MACECalculator(compile_mode="default") does
            from mace.tools.compile import prepare
            from mace.tools.scripts_utils import extract_model

            m = torch.compile(prepare(extract_model)(model=m, map_location=device), mode="default", fullgraph=True)
        for p in m.parameters():
            p.requires_grad_(False)
        for system, path in spec["systems"].items():
            if skipped(spec.get("skip", []), system, spec["model_name"], dtype_name):
                continue
            atoms = ase.io.read(path)
            config = mace_data.config_from_atoms(atoms)
            data = mace_data.AtomicData.from_config(config, z_table=z_table, cutoff=h["r_max"], heads=h["heads"])
            loader = torch_geometric.dataloader.DataLoader(dataset=[data], batch_size=1, shuffle=False)
            batch = next(iter(loader)).to(device).to_dict()
            if mode == "compiled":
                batch["positions"].requires_grad_(True)
                batch["node_attrs"].requires_grad_(True)
            energy = {}

            def call() -> None:
                out = m(batch, compute_force=True, training=(mode == "compiled"))
                energy["e"] = float(out["energy"][0])
                energy["f"] = out["forces"].detach().cpu().double().numpy().tolist()

            try:
                timing = time_calls(call, spec["repeats"], spec["warmup"], device)
            except RuntimeError as err:  # out of memory on a large system: leave the row empty
                results.append({"system": system, "dtype": dtype_name, "mode": mode,
                                "error": str(err).splitlines()[0][:120]})
                continue
            results.append({"system": system, "dtype": dtype_name, "mode": mode, "energy": energy["e"],
                            "forces": energy["f"], **timing})
    (out_dir / "mace_timings.json").write_text(json.dumps(results, indent=1))


def run_mace_worker(python: str, model_name: str, systems: dict[str, str], args, out_dir: Path) -> list[dict] | None:
    """Run :func:`mace_worker` in the mace venv; ``None`` (with a note) when that fails."""
    spec = {
        "hyperparameters": mace_hyperparameters(MODELS[model_name], MODEL_EXTRAS.get(model_name)),
        "model_name": model_name, "systems": systems, "mace_modes": args.mace_modes,
        "dtypes": args.dtypes, "device": args.device, "repeats": args.repeats, "warmup": args.warmup, "out_dir": str(out_dir),
        "seed": 0, "threads": args.threads, "skip": args.skip,
    }
    spec_path = out_dir / "spec.json"
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH="")
    script = str(Path(__file__).with_name("benchmark_inference.py"))
    proc = subprocess.run([python, script, "--mace-worker", str(spec_path)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"# mace-torch worker failed (column left empty): {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads((out_dir / "mace_timings.json").read_text())
