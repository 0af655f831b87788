"""``mlip-convert from-mace``: build the mlip model equivalent to a mace-torch model.

    mlip-convert from-mace --hyperparameters H.json --state-dict S.npz -o model.pt
    mlip-convert from-mace file.model -o model.pt   (mace-torch .model, read safely: no mace-torch needed and
                                                     nothing from the file runs; same as --model file.model)
    mlip-convert to-mace model.pt -o DIR             (hyperparameters.json + state_dict.npz for mace-torch 0.3.16)
    mlip-convert backend --model in.pt --backend cueq -o out.pt  (e3nn <-> cuEquivariance, self-checked)
    mlip-convert lammps model.pt -o model-mliap.pt  (pair_style mliap unified file; LAMMPS only, docs/integrations.md)
"""

from __future__ import annotations

import argparse

from mlip.cli.common import run_cli
from mlip.device import resolve_dtype
from mlip.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlip-convert", description="Convert foreign model files to mlip model files.")
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("from-mace", help="convert a mace-torch model (see docs/model.md)")
    m.add_argument("--hyperparameters", help="mace-torch constructor arguments (JSON)")
    m.add_argument("--state-dict", help="mace-torch state dict as NPZ (one array per key)")
    m.add_argument("source", nargs="?", help="mace-torch .model file (read without mace-torch; no code from it runs)")
    m.add_argument("--model", help="same as the positional .model file")
    m.add_argument("-o", "--output", required=True, help="output mlip model file")
    m.add_argument("--dtype", choices=["float64", "float32"], default=None,
                   help="dtype of the written model (default: the .model file's; float64 for --state-dict)")
    t = sub.add_parser("to-mace", help="write mace-torch constructor arguments (JSON) + state dict (NPZ), see docs/model.md")
    t.add_argument("model", help="input mlip model file")
    t.add_argument("-o", "--output", required=True, help="output folder (hyperparameters.json, state_dict.npz)")
    b = sub.add_parser("backend", help="switch a model file between the e3nn and cueq backends (checked, lossless)")
    b.add_argument("--model", required=True, help="input mlip model file")
    b.add_argument("--backend", required=True, choices=["e3nn", "cueq"], help="backend of the written model")
    b.add_argument("-o", "--output", required=True, help="output mlip model file")
    lm = sub.add_parser("lammps", help="write the file 'pair_style mliap unified' loads (a pickle, for LAMMPS only)")
    lm.add_argument("model", help="input mlip model file")
    lm.add_argument("-o", "--output", required=True, help="output file, e.g. model-mliap.pt (see docs/integrations.md)")
    lm.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the model runs inside LAMMPS")
    lm.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    lm.add_argument("--head", default=None, help="model head (default: the only or default head)")
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "lammps":
        return _to_lammps(args)
    if args.command == "to-mace":
        from mlip.io.mace_export import export_mace
        from mlip.io.model_file import load_model

        hp_path, sd_path = export_mace(load_model(args.model, dtype=resolve_dtype("float64")), args.output)
        print(f"wrote {hp_path} and {sd_path}; load them in a mace-torch venv with scripts/mace_from_mlip_export.py")
        return 0
    if args.command == "backend":
        from mlip.io.model_file import convert_model_file

        diff = convert_model_file(args.model, args.output, args.backend)
        print(f"wrote {args.output}: backend {args.backend}, checked against the source model (max rel. diff {diff:.1e})")
        return 0
    from mlip.io.mace import convert_mace_files, convert_mace_model_file
    from mlip.io.model_file import save_model

    dtype = None if args.dtype is None else resolve_dtype(args.dtype, key="--dtype")
    if args.source and args.model and args.source != args.model:
        raise ConfigError("from-mace: give the .model file once (positional or --model)")
    model_file = args.source or args.model
    if model_file:
        if args.hyperparameters or args.state_dict:
            raise ConfigError("from-mace: give either a .model file or --hyperparameters with --state-dict, not both")
        model = convert_mace_model_file(model_file, dtype=dtype)
        source = {"converted_from": str(model_file)}
    else:
        if not (args.hyperparameters and args.state_dict):
            raise ConfigError("from-mace: --hyperparameters and --state-dict are both required (or a .model file)")
        model = convert_mace_files(args.hyperparameters, args.state_dict, dtype=dtype or resolve_dtype("float64"))
        source = {"converted_from": [str(args.hyperparameters), str(args.state_dict)]}
    save_model(model, args.output, metadata=source)
    print(f"wrote {args.output}: elements {model.atomic_numbers}, heads {model.heads}, r_max {model.r_max}")
    return 0


def _to_lammps(args: argparse.Namespace) -> int:
    """``mlip-convert lammps model.pt -o model-mliap.pt``."""
    try:
        from mlip.integrations.mliap import write_mliap_model
    except ImportError as err:
        raise ConfigError(f"lammps: {err}") from None
    unified = write_mliap_model(args.model, args.output, device=args.device, dtype=args.dtype, head=args.head)
    print(f"wrote {args.output} for 'pair_style mliap unified {args.output} 0|1' with "
          f"'pair_coeff * * {' '.join(unified.element_types)}' (one element name per LAMMPS type); "
          f"cutoff {unified.r_max} A")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mlip-convert``."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
