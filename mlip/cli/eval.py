"""``mlip-eval --model model.pt --data file.xyz``: error table, predictions file and JSON metrics."""

from __future__ import annotations

import argparse

from mlip.cli.common import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlip-eval", description="Evaluate a trained model on a labelled file.")
    p.add_argument("--model", required=True, help="model file written by mlip-train (model.pt)")
    p.add_argument("--data", required=True, help="structures with reference labels (extended XYZ, ...; path, or "
                   "path@slice such as test.xyz@0:10)")
    p.add_argument("--head", default=None, help="evaluate every frame with this head (default: the model's only "
                   "head, or each frame's 'head' key)")
    p.add_argument("--output", default=None, help="write the frames with predictions <prefix>energy, <prefix>forces, "
                   "<prefix>stress (periodic frames) here (extended XYZ)")
    p.add_argument("--info-prefix", default="MLIP_", help="prefix of the prediction keys in --output (default "
                   "MLIP_; mace_eval_configs writes MACE_)")
    p.add_argument("--node-energies", action="store_true", help="also write per-atom energies <prefix>node_energy "
                   "(eV, E0 + interaction energy; they sum to <prefix>energy) to --output")
    p.add_argument("--dtype", default=None, choices=["float64", "float32"],
                   help="evaluate in this precision (default: the model file's)")
    p.add_argument("--json", default=None, help="write metrics as JSON here")
    p.add_argument("--batch-size", type=int, default=16, help="frames per batch (default 16)")
    p.add_argument("--energy-key", default="energy")
    p.add_argument("--forces-key", default="forces")
    p.add_argument("--stress-key", default="stress")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--uncertainty", action="store_true", help="also write <prefix>energy_uncertainty (info, eV) "
                   "and <prefix>forces_uncertainty (per atom, eV/A) to --output, from the LLPR in --model "
                   "(mlip-uncertainty fit); docs/uncertainty.md")
    p.add_argument("--committee", nargs="+", default=None, metavar="MODEL",
                   help="with --uncertainty: the spread of a committee of --model and these model files instead")
    p.add_argument("--force-samples", type=int, default=None, metavar="K", help="with --uncertainty: LLPR force "
                   "uncertainties from K random posterior directions instead of exactly (faster for big files; relative "
                   "noise about sqrt(2/K) per component)")
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from pathlib import Path

    from mlip.data.io import split_selection
    from mlip.device import resolve_device, resolve_dtype
    from mlip.errors import ConfigError, DataError
    from mlip.io.model_file import load_model
    from mlip.train.evaluation import evaluate_file

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: must be >= 1, got {args.batch_size}")
    if args.force_samples is not None and not args.uncertainty:
        raise ConfigError("--force-samples needs --uncertainty")
    if args.committee and not args.uncertainty:
        raise ConfigError("--committee: a committee gives uncertainties; add --uncertainty (and --output FILE.xyz)")
    if args.uncertainty and not args.output:
        raise ConfigError("--uncertainty: the uncertainties are written to --output; give --output FILE.xyz")
    if args.node_energies and not args.output:
        raise ConfigError("--node-energies: per-atom energies are written to --output; give --output FILE.xyz")
    if not args.info_prefix or any(c.isspace() or c in "=\"'" for c in args.info_prefix):
        raise ConfigError(f"--info-prefix: {args.info_prefix!r} is not a usable key prefix (no spaces, quotes or =)")
    if not Path(split_selection(args.data)[0]).is_file():
        raise DataError(f"--data {args.data}: file not found")
    device = resolve_device(args.device, key="--device")
    model = load_model(args.model, device=device, dtype=resolve_dtype(args.dtype) if args.dtype else None)
    potential = None
    if args.uncertainty:  # before anything is written: a model without LLPR stops here, with no output file
        from mlip.uncertainty import load_potential

        potential = load_potential(args.model, args.committee or (), device=device, force_samples=args.force_samples)
    evaluate_file(
        model, args.data, head=args.head, batch_size=args.batch_size, energy_key=args.energy_key,
        forces_key=args.forces_key, stress_key=args.stress_key, output=args.output, json_path=args.json,
        device=device, info_prefix=args.info_prefix, node_energies=args.node_energies,
    )
    if potential is not None:
        from mlip.uncertainty import annotate_file

        annotate_file(args.output, potential, args.info_prefix, args.head, args.batch_size, device)
        print(f"uncertainties ({'committee' if args.committee else 'LLPR'}) added to {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
