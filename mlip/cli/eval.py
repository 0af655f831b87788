"""``mlip-eval --model model.pt --data file.xyz``: error table, predictions file and JSON metrics."""

from __future__ import annotations

import argparse

from mlip.cli.common import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlip-eval", description="Evaluate a trained model on a labelled file.")
    p.add_argument("--model", required=True, help="model file written by mlip-train (model.pt)")
    p.add_argument("--data", required=True, help="structures with reference labels (extended XYZ, ...)")
    p.add_argument("--head", default=None, help="evaluate every frame with this head (default: the model's only "
                   "head, or each frame's 'head' key)")
    p.add_argument("--output", default=None, help="write predictions (MLIP_energy, MLIP_forces, MLIP_stress) here")
    p.add_argument("--json", default=None, help="write metrics as JSON here")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--energy-key", default="energy")
    p.add_argument("--forces-key", default="forces")
    p.add_argument("--stress-key", default="stress")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from pathlib import Path

    from mlip.device import resolve_device
    from mlip.errors import ConfigError, DataError
    from mlip.io.model_file import load_model
    from mlip.train.evaluation import evaluate_file

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: must be >= 1, got {args.batch_size}")
    if not Path(args.data).is_file():
        raise DataError(f"{args.data}: file not found")
    device = resolve_device(args.device, key="--device")
    model = load_model(args.model, device=device)
    evaluate_file(
        model, args.data, head=args.head, batch_size=args.batch_size, energy_key=args.energy_key,
        forces_key=args.forces_key, stress_key=args.stress_key, output=args.output, json_path=args.json,
        device=device,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
