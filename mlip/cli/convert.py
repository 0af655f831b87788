"""``mlip-convert from-mace``: build the mlip model equivalent to a mace-torch model.

    mlip-convert from-mace --hyperparameters H.json --state-dict S.npz -o model.pt
    mlip-convert from-mace --model file.model -o model.pt      (needs mace-torch installed)
"""

from __future__ import annotations

import argparse

import torch

from mlip.cli.common import run_cli
from mlip.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlip-convert", description="Convert foreign model files to mlip model files.")
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("from-mace", help="convert a mace-torch model (see docs/model.md)")
    m.add_argument("--hyperparameters", help="mace-torch constructor arguments (JSON)")
    m.add_argument("--state-dict", help="mace-torch state dict as NPZ (one array per key)")
    m.add_argument("--model", help="mace-torch .model file (requires mace-torch importable)")
    m.add_argument("-o", "--output", required=True, help="output mlip model file")
    m.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="dtype of the written model")
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from mlip.io.mace import convert_mace_files, convert_mace_model_file
    from mlip.io.model_file import save_model

    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    if args.model:
        if args.hyperparameters or args.state_dict:
            raise ConfigError("from-mace: give either --model or --hyperparameters with --state-dict, not both")
        model = convert_mace_model_file(args.model, dtype=dtype)
        source = {"converted_from": str(args.model)}
    else:
        if not (args.hyperparameters and args.state_dict):
            raise ConfigError("from-mace: --hyperparameters and --state-dict are both required (or --model)")
        model = convert_mace_files(args.hyperparameters, args.state_dict, dtype=dtype)
        source = {"converted_from": [str(args.hyperparameters), str(args.state_dict)]}
    save_model(model, args.output, metadata=source)
    print(f"wrote {args.output}: elements {model.atomic_numbers}, heads {model.heads}, r_max {model.r_max}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mlip-convert``."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
