"""``mlip-train --config c.yaml [key.sub=value ...] [--resume]``: train a model (see docs/config.md).

Overrides and options may come in any order (``key=v --resume key2=v2``): the arguments are parsed
intermixed, overrides applied in the order given."""

from __future__ import annotations

import argparse
import sys

from mlip.cli.common import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mlip-train",
        description="Train a MACE-style interatomic potential from a YAML config (docs/config.md).",
    )
    p.add_argument("--config", "-c", required=True, help="YAML configuration file")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="override config keys, values parsed as YAML (e.g. train.lr=0.005 data.test=[a.xyz,b.xyz])")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in <output_dir>/checkpoints (without one: a "
                   "warning line, then training starts from scratch)")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, overrides collected from both sides of the options (``key=v --resume key2=v2``)."""
    return build_parser().parse_intermixed_args(argv)


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    from mlip.config import load_config
    from mlip.train.run import train

    cfg = load_config(args.config, args.overrides)
    from mlip.train.distributed import train_distributed, wants_distributed
    from mlip.train.notices import config_notices

    for line in config_notices(cfg):
        print(f"warning: {line}", flush=True)
    try:
        if wants_distributed(cfg):
            train_distributed(cfg, resume=args.resume)
        else:
            train(cfg, resume=args.resume)
    except KeyboardInterrupt:
        print(interrupt_hint(args, cfg.output_dir), file=sys.stderr)
        return 130
    return 0


def interrupt_hint(args: argparse.Namespace, output_dir: str) -> str:
    """The one line printed on Ctrl-C: how to continue the run with ``--resume``; it ends with the command
    (after the only ``": "``), shell-quoted so that it can be pasted as it is."""
    import shlex
    from pathlib import Path

    ckpts = Path(output_dir) / "checkpoints"
    cmd = shlex.join(["mlip-train", "--config", args.config, *args.overrides, "--resume"])
    if ckpts.is_dir() and any(ckpts.glob("*.pt")):
        return f"interrupted; continue from the newest checkpoint in {ckpts} with: {cmd}"
    return (f"interrupted before the first checkpoint was written (every checkpoint.interval epochs), so this "
            f"starts from scratch: {cmd}")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
