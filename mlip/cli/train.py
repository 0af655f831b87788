"""``mlip-train --config c.yaml [key.sub=value ...] [--resume]``: train a model (see docs/config.md)."""

from __future__ import annotations

import argparse

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
                   help="continue from the newest checkpoint in <output_dir>/checkpoints")
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from mlip.config import load_config
    from mlip.train.run import train

    cfg = load_config(args.config, args.overrides)
    from mlip.train.distributed import train_distributed, wants_distributed

    if wants_distributed(cfg):
        train_distributed(cfg, resume=args.resume)
    else:
        train(cfg, resume=args.resume)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
