"""mlip-data: inspect a data file before training (argument parsing only; logic in mlip.data)."""

from __future__ import annotations

import argparse

from mlip.cli.common import run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlip-data", description="Inspect labelled structure files.")
    sub = parser.add_subparsers(dest="command", required=True)
    summary = sub.add_parser("summary", help="frames, elements, atoms/frame, label coverage, E0s")
    summary.add_argument("files", nargs="+", help="ASE-readable structure files (extxyz, ...)")
    summary.add_argument("--energy-key", default="energy")
    summary.add_argument("--forces-key", default="forces")
    summary.add_argument("--stress-key", default="stress")
    summary.add_argument("--virials-key", default="virials")
    summary.add_argument("--head-key", default="head")
    summary.add_argument("--config-type-key", default="config_type")
    summary.add_argument("--index", default=":", help="ASE index of the frames (default all)")
    return parser


def _main(argv: list[str] | None) -> int:
    from mlip.data.summary import summarize_files

    args = build_parser().parse_args(argv)
    if args.command == "summary":
        text = summarize_files(
            args.files, index=args.index, energy_key=args.energy_key, forces_key=args.forces_key,
            stress_key=args.stress_key, virials_key=args.virials_key, head_key=args.head_key,
            config_type_key=args.config_type_key,
        )
        print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mlip-data``; user errors give one line on stderr and exit status 2."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
