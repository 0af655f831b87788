"""``mlip-preprocess``: write an on-disk (HDF5) dataset for training sets larger than memory.

    mlip-preprocess --config c.yaml [-o data_dir]        # data section of a training config (default runs/c_h5/)
    mlip-preprocess --data a.xyz b.xyz --energy-key E -o out.h5 [--r-max 5] [--e0s fit]

Frames are streamed (never all in memory) with a progress bar; see docs/scale-out.md.
"""

from __future__ import annotations

import argparse
import json
import sys

from mlip.cli.common import run_cli
from mlip.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlip-preprocess", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", "-c", help="training config: its data section is converted (train/valid/test.h5)")
    src.add_argument("--data", nargs="+", help="input structure files (any ASE format)")
    p.add_argument("--output", "-o", default=None,
                   help="with --config: output directory (default: runs/<config name>_h5, git-ignored); "
                        "with --data: output .h5 file (required)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides (with --config)")
    p.add_argument("--energy-key", default="energy")
    p.add_argument("--forces-key", default="forces")
    p.add_argument("--stress-key", default="stress")
    p.add_argument("--virials-key", default="virials")
    p.add_argument("--head", default=None, help="head name of every frame (default: the frames' 'head' key)")
    p.add_argument("--r-max", type=float, default=5.0, help="cutoff (A) of the stored neighbour statistics")
    p.add_argument("--e0s", default="fit",
                   help="'fit' / 'average' (least squares), 'isolated' (needs --isolated-atoms or IsolatedAtom "
                   "frames), or element energies: a JSON mapping, 'H=-13.6,C=-1026.9', or a JSON/YAML file")
    p.add_argument("--isolated-atoms", default=None, help="file with isolated-atom frames (for --e0s isolated)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (a bar is only drawn on a "
                   "terminal: logs get no carriage-return lines)")
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from mlip.data.ondisk import is_ondisk_path, preprocess_files
    from mlip.train.preprocess import preprocess_config

    if args.config:
        from mlip.config import load_config

        out = args.output or default_output(args.config)
        preprocess_config(load_config(args.config, args.overrides), out, progress=_progress(args))
        return 0
    if args.overrides:
        raise ConfigError(f"overrides {args.overrides} need --config")
    if args.output is None:
        raise ConfigError("--output: give the .h5 file to write (with --data)")
    if not is_ondisk_path(args.output):
        raise ConfigError(f"--output {args.output}: expected a .h5 file name")
    e0s = _e0s(args.e0s)
    keys = {"energy_key": args.energy_key, "forces_key": args.forces_key, "stress_key": args.stress_key,
            "virials_key": args.virials_key}
    preprocess_files(args.data, args.output, r_max=args.r_max, e0s=e0s, isolated_atoms=args.isolated_atoms,
                     keys=keys, head=args.head, progress=_progress(args))
    return 0


def default_output(config: str) -> str:
    """Output folder of ``--config`` without ``-o``: ``runs/<config name>_h5`` under the working directory
    (beside the training runs, git-ignored in a clone; not next to the config, where it littered ``configs/``)."""
    from pathlib import Path

    return str(Path("runs") / f"{Path(config).stem}_h5")


def _progress(args: argparse.Namespace) -> bool:
    """A progress bar only when asked and stderr (where tqdm draws) is a terminal."""
    return not args.no_progress and sys.stderr.isatty()


def _e0s(text: str) -> str | dict[int, float]:
    """``--e0s``: a keyword, or element energies through the one parser (mlip.data.elements)."""
    from mlip.data.elements import load_element_energies, parse_element_energies

    if text in ("fit", "average", "isolated"):
        return text
    if text.lstrip().startswith("{"):
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--e0s {text!r}: invalid JSON ({err})") from None
        if not isinstance(mapping, dict):
            raise ConfigError(f"--e0s {text!r}: expected a JSON mapping element -> energy")
        return parse_element_energies(mapping, "option --e0s")
    if not ("=" in text or text.lower().endswith((".json", ".yaml", ".yml"))):
        raise ConfigError(f"--e0s {text!r}: expected 'fit', 'average', 'isolated', a JSON mapping, "
                          "'H=-13.6,...' or a JSON/YAML file (isolated-atom frames: --e0s isolated --isolated-atoms FILE)")
    return load_element_energies(text, "option --e0s")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
