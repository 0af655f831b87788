"""``mlip-report --model M --structure S [--data D] -o report/``: a property report users read before trusting a model.

Writes ``report/index.html`` (one page, PNG figures beside it, opens in any browser). A structure periodic in all
three directions gets the equation of state, elastic constants, phonons and a short NVT MD; anything else
(a molecule) gets vibrational frequencies, the MD and, with ``--data``, relative energies per config_type.
``--only eos,phonons`` runs some sections. docs/report.md describes each section and its settings.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mlip.cli.common import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlip-report", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model file (model.pt or a mace-torch .model)")
    p.add_argument("--structure", required=True, help="structure file (anything ASE reads; path@index for one frame)")
    p.add_argument("--data", default=None, help="reference frames (extended XYZ): DFT stresses of strained frames, "
                   "energies per config_type, the closest pair for the MD check")
    p.add_argument("-o", "--output", required=True, help="report folder (index.html and PNGs)")
    p.add_argument("--only", default=None, help="comma-separated sections: eos, elastic, phonons, md (periodic); "
                   "vibrations, md, parity (molecule)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N [cpu]")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--head", default=None, help="model head [the model's default_head, else its only head]")
    p.add_argument("--supercell", type=int, nargs=3, default=[2, 2, 2], help="phonon and MD supercell [2 2 2]")
    p.add_argument("--md-steps", type=int, default=2000, help="NVT MD steps (2 ps at 1 fs) [2000]")
    p.add_argument("--temperature", type=float, default=300.0, help="MD temperature (K) [300]")
    p.add_argument("--timestep", type=float, default=1.0, help="MD timestep (fs) [1]")
    return p


def _read_structure(spec: str):
    import ase.io

    from mlip.data.io import split_selection
    from mlip.errors import DataError

    path, index = split_selection(spec)
    if not Path(path).is_file():
        raise DataError(f"--structure {path}: file not found")
    frames = ase.io.read(path, index=index if index != ":" else "0:1")
    frames = frames if isinstance(frames, list) else [frames]
    if len(frames) != 1:
        raise DataError(f"--structure {spec}: selects {len(frames)} frames; give one (path@index)")
    return frames[0]


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from mlip.analysis.property_report import ReportSettings, build_sections, sections_for
    from mlip.analysis.report_page import write_page
    from mlip.calculator import MLIPCalculator
    from mlip.errors import ConfigError, DataError
    from mlip.fidelity.labels import read_structures

    if not Path(args.model).is_file():
        raise DataError(f"--model {args.model}: file not found")
    if args.md_steps < 1 or min(args.supercell) < 1:
        raise ConfigError("--md-steps and --supercell take whole numbers >= 1")
    structure = _read_structure(args.structure)
    data = read_structures(args.data) if args.data else []
    names = sections_for(structure, args.only.split(",") if args.only else None, bool(data))
    calc = MLIPCalculator(args.model, device=args.device, dtype=args.dtype, head=args.head)
    structure.calc = None
    settings = ReportSettings(supercell=tuple(args.supercell), md_steps=args.md_steps,
                              md_temperature_K=args.temperature, md_timestep_fs=args.timestep)
    start = time.perf_counter()
    sections = build_sections(structure, calc, args.output, names, data, settings)
    header = {"model": args.model, "head": calc.head, "dtype": args.dtype, "device": args.device,
              "structure": f"{args.structure} ({structure.get_chemical_formula()}, {len(structure)} atoms, "
                           f"pbc {structure.pbc.tolist()})", "reference data": args.data or "none",
              "total time (s)": round(time.perf_counter() - start, 1)}
    page = write_page(args.output, f"mlip property report: {structure.get_chemical_formula()}", header, sections)
    print(f"mlip-report: wrote {page}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mlip-report``."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
