"""One measurement of scripts/benchmark_calculator.py, in a process of its own.

``python benchmark_calculator_worker.py SPEC.json`` runs the task the spec names and writes its result
(JSON) to ``spec["out"]``. It runs in either venv: mace-torch's (``framework: mace``; it never imports
mlip) or mlip's (``framework: mlip``). At import time it needs only numpy and the standard library;
torch, ase, mace and mlip are imported by the task that uses them.

Tasks:

* ``prepare-mace`` (mace venv): a ``ScaleShiftMACE`` with random perturbed weights, built by
  :func:`benchmark_inference_mace.mace_worker` (which writes ``hyperparameters.json`` and
  ``state_dict.npz``), loaded back into mace-torch's class by :func:`mace_from_mlip_export.build` and
  saved with ``torch.save(model)`` as ``<name>.model`` (the file ``MACECalculator(model_paths=...)`` loads).
* ``prepare-mlip`` (mlip venv): the same weights converted by :func:`mlip.io.mace.convert_mace_files`
  (random weights when there are no mace-torch files), saved with :func:`mlip.io.model_file.save_model`.
* ``speed``: the calculator on one system; before every call the positions are the unrattled ones
  plus the next draw of :func:`rattles`; ``warmup`` untimed calls, then ``repeats`` timed
  ``atoms.get_potential_energy(); atoms.get_forces()`` calls.
* ``memory``: one eager energy+forces call; the process's peak RSS (``ru_maxrss``), and its RSS before it.
* ``md`` (mlip): ASE ``VelocityVerlet`` (1 fs); the time of ``dyn.run(steps)`` and the time spent inside
  ``MLIPCalculator.evaluate`` (and ``make_batch``, the neighbour list and the batch).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_inference import build_system  # noqa: E402  (scripts are not a package)

SI_LATTICE = 5.43


# ------------------------------------------------------------------------------------------
# pure helpers (also used by the parent and the tests)
# ------------------------------------------------------------------------------------------
def rattles(n_atoms: int, seed: int, sigma: float) -> Iterator[np.ndarray]:
    """The displacement of call 0, 1, 2, ...: N(0, sigma) per coordinate, ``[n_atoms, 3]``, from one
    ``numpy.random.default_rng(seed)`` (the same sequence in both venvs for the same numpy)."""
    rng = np.random.default_rng(seed)
    while True:
        yield rng.normal(0.0, sigma, size=(n_atoms, 3))


def si_cells(name: str) -> int | None:
    """``n`` of an ``n x n x n`` cubic diamond Si system named ``si<8 n^3>`` (``si512`` -> 4), else None."""
    if not name.startswith("si") or not name[2:].isdigit():
        return None
    atoms = int(name[2:])
    n = round((atoms / 8) ** (1 / 3))
    if 8 * n**3 != atoms:
        raise SystemExit(f"{name}: not 8 n^3 atoms (n x n x n cubic diamond cells)")
    return n


def make_system(name: str):
    """``acac`` (data/acac/test.xyz frame 0, non-periodic) or ``si<8 n^3>`` (n^3 cubic cells, a = 5.43 A)."""
    n = si_cells(name)
    if n is None:
        return build_system(name)
    from ase.build import bulk

    return bulk("Si", "diamond", a=SI_LATTICE, cubic=True) * (n, n, n)


def rss_mib() -> float:
    """Resident set size now (``/proc/self/statm``), MiB."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def max_rss_mib() -> float:
    """Peak resident set size of this process so far (``ru_maxrss``, KiB on Linux), MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------
# the calculators, as users make them
# ------------------------------------------------------------------------------------------
def make_calculator(spec: dict[str, Any]):
    compiled = spec["mode"] == "compiled"
    if spec["framework"] == "mace":
        import torch
        from mace.calculators import MACECalculator

        # compile_mode rebuilds the model (mace.tools.scripts_utils.extract_model) in torch's default dtype:
        # without this, default_dtype="float64" with compile_mode="default" would compute in float32
        torch.set_default_dtype(getattr(torch, spec["dtype"]))
        return MACECalculator(model_paths=spec["model"], default_dtype=spec["dtype"],
                              compile_mode="default" if compiled else None, device="cpu")
    from mlip.calculator import MLIPCalculator

    return MLIPCalculator(model=spec["model"], dtype=spec["dtype"], compile=compiled)


def model_dtype(calc: Any) -> str:
    """The dtype the calculator's model computes in (its first parameter's), e.g. ``float64``."""
    model = calc.models[0] if hasattr(calc, "models") else calc.model
    return str(next(model.parameters()).dtype).replace("torch.", "")


def versions(framework: str) -> dict[str, str]:
    import torch

    out = {"torch": torch.__version__, "numpy": np.__version__}
    if framework == "mace":
        import mace

        out["mace-torch"] = getattr(mace, "__version__", "?")
    else:
        import mlip

        out["mlip"] = mlip.__version__
    return out


# ------------------------------------------------------------------------------------------
# tasks
# ------------------------------------------------------------------------------------------
def task_speed(spec: dict[str, Any]) -> dict[str, Any]:
    atoms = make_system(spec["system"])
    base = atoms.positions.copy()
    noise = rattles(len(atoms), spec["seed"], spec["sigma"])
    t0 = time.perf_counter()
    atoms.calc = make_calculator(spec)
    setup = time.perf_counter() - t0
    last: dict[str, Any] = {}

    def call() -> float:
        shift = next(noise)
        atoms.positions = base + shift  # outside the timed region
        start = time.perf_counter()
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        elapsed = time.perf_counter() - start
        last.update(energy=float(energy), forces=np.asarray(forces, dtype=np.float64), checksum=float(shift.sum()))
        return elapsed

    warm = sum(call() for _ in range(spec["warmup"]))
    times = [call() for _ in range(spec["repeats"])]
    return {"atoms": len(atoms), "model_dtype": model_dtype(atoms.calc), "setup_s": setup, "warmup_s": warm, "ms": 1e3 * statistics.median(times),
            "ms_all": [1e3 * t for t in times], "energy": last["energy"], "forces": last["forces"].tolist(),
            "rattle_checksum": last["checksum"], "calls": spec["warmup"] + spec["repeats"]}


def task_memory(spec: dict[str, Any]) -> dict[str, Any]:
    atoms = make_system(spec["system"])
    atoms.positions = atoms.positions + next(rattles(len(atoms), spec["seed"], spec["sigma"]))
    atoms.calc = make_calculator({**spec, "mode": "eager"})
    before, peak_before = rss_mib(), max_rss_mib()
    t0 = time.perf_counter()
    energy = atoms.get_potential_energy()
    atoms.get_forces()
    seconds = time.perf_counter() - t0
    return {"atoms": len(atoms), "model_dtype": model_dtype(atoms.calc), "rss_before_mib": before, "peak_before_mib": peak_before,
            "peak_rss_mib": max_rss_mib(), "call_s": seconds, "energy": float(energy)}


def task_md(spec: dict[str, Any]) -> dict[str, Any]:
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms = make_system(spec["system"])
    MaxwellBoltzmannDistribution(atoms, temperature_K=spec["temperature"], rng=np.random.default_rng(spec["seed"]))
    calc = make_calculator(spec)
    clock = {"evaluate": 0.0, "make_batch": 0.0, "calculate": 0.0, "calls": 0}
    for name in ("evaluate", "make_batch", "calculate"):
        setattr(calc, name, _timed(getattr(calc, name), clock, name))
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, timestep=spec["timestep_fs"] * units.fs)
    t0 = time.perf_counter()
    dyn.run(spec["warmup"])  # compilation happens here
    warm = time.perf_counter() - t0
    clock.update(evaluate=0.0, make_batch=0.0, calculate=0.0, calls=0)
    t0 = time.perf_counter()
    dyn.run(spec["steps"])
    total = time.perf_counter() - t0
    steps = spec["steps"]
    out = {"atoms": len(atoms), "model_dtype": model_dtype(calc), "steps": steps, "warmup_s": warm, "total_s": total, "model_calls": clock["calls"],
           "ms_step": 1e3 * total / steps, "ms_model": 1e3 * clock["evaluate"] / steps,
           "ms_batch": 1e3 * clock["make_batch"] / steps,
           "outside_pct": 100 * (total - clock["evaluate"]) / total,
           # the calculator's own share: MLIPCalculator.calculate outside the model call (ASE's integrator excluded)
           "calculator_pct": 100 * (clock["calculate"] - clock["evaluate"]) / total}
    if calc.potential is not None:
        out["num_compiles"] = calc.potential.num_compiles
    return out


def _timed(method, clock: dict[str, Any], name: str):
    def wrapper(*args: Any, **kwargs: Any):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            clock[name] += time.perf_counter() - start
            clock["calls"] += name == "evaluate"

    return wrapper


def task_prepare_mace(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from benchmark_inference_mace import mace_worker
    from mace_from_mlip_export import build

    out_dir = Path(spec["out_dir"])
    inner = {"hyperparameters": spec["hyperparameters"], "out_dir": str(out_dir), "device": "cpu",
             "dtypes": [], "systems": {}, "seed": spec["seed"], "threads": 1, "model_name": spec["name"]}
    (out_dir / "mace_spec.json").write_text(json.dumps(inner))
    mace_worker(str(out_dir / "mace_spec.json"))  # writes hyperparameters.json + state_dict.npz
    model = build(out_dir)
    path = out_dir / f"{spec['name']}.model"
    torch.save(model, path)
    return {"model": str(path), "parameters": sum(p.numel() for p in model.parameters())}


def task_prepare_mlip(spec: dict[str, Any]) -> dict[str, Any]:
    from benchmark_inference import mlip_model

    from mlip.io.model_file import save_model

    out_dir = Path(spec["out_dir"])
    have = (out_dir / "hyperparameters.json").exists() and (out_dir / "state_dict.npz").exists()
    h = spec["hyperparameters"]
    extras = {k: v for k, v in h.items() if k != "hidden_irreps"}
    model, origin = mlip_model(h["hidden_irreps"], out_dir, have, extras)
    path = out_dir / f"{spec['name']}-mlip.pt"
    save_model(model, path, metadata={"origin": origin})
    return {"model": str(path), "weights": origin, "parameters": sum(p.numel() for p in model.parameters())}


TASKS = {"speed": task_speed, "memory": task_memory, "md": task_md,
         "prepare-mace": task_prepare_mace, "prepare-mlip": task_prepare_mlip}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    import torch

    torch.set_num_threads(spec.get("threads", 1))
    result = TASKS[spec["task"]](spec)
    result.update(versions=versions(spec["framework"]), rss_end_mib=rss_mib(), peak_rss_end_mib=max_rss_mib())
    Path(spec["out"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
