"""``mlip-lammps --model model.pt --elements Si Mo -in in.lammps``: run a LAMMPS input with an mlip model.

The input declares the coupling with ``fix mlip all external pf/callback 1 1`` (units metal); LAMMPS
types 1..n are the given elements in order. Arguments that mlip-lammps does not know (``-var``,
``-log``, ``-screen``, ...) are passed to LAMMPS. See docs/integrations.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mlip.cli.common import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mlip-lammps",
        description="Run a LAMMPS input whose 'fix mlip all external pf/callback 1 1' is an mlip model "
        "(units metal; under mpiexec -n N on N ranks). Unknown arguments go to LAMMPS (e.g. -var T 300 -log run.log).",
        allow_abbrev=False,
    )
    p.add_argument("--model", required=True, help="mlip model file (model.pt)")
    p.add_argument("--elements", required=True, nargs="+", help="element of each LAMMPS atom type, type 1 first")
    p.add_argument("-in", "--input", dest="input", required=True, help="LAMMPS input script")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--head", default=None, help="model head (default: the model's only or default head)")
    p.add_argument("--fix-id", default="mlip", help="ID of the fix external carrying the model (default mlip)")
    return p


def _main(argv: list[str] | None) -> int:
    args, lammps_args = build_parser().parse_known_args(argv)
    from mlip.errors import ConfigError
    from mlip.integrations.lammps import (
        element_numbers,
        import_lammps,
        input_commands,
        run_input,
    )

    if not Path(args.model).is_file():
        raise ConfigError(f"--model {args.model}: no such model file")
    element_numbers(args.elements)
    input_commands(args.input)  # checks the file before LAMMPS starts
    lammps = import_lammps()
    lmp = lammps.lammps(cmdargs=["-nocite", *lammps_args])
    try:
        coupling = run_input(
            lmp, args.input, args.model, args.elements, device=args.device, dtype=args.dtype,
            head=args.head, fix_id=args.fix_id,
        )
        if int(lmp.extract_setting("world_rank")) == 0:
            print(f"mlip-lammps: {coupling.calls} model evaluations, {coupling.reused} force calls reused "
                  f"(rank 0 of {int(lmp.extract_setting('world_size'))})")
    finally:
        lmp.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mlip-lammps``."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
