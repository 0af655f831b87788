"""``mlip-bonds --model model.pt --data file.xyz --output report/``: E3D bond-energy decomposition.

Writes edges.csv, summary.json, bonds.csv, bond_table.csv/.md and PNGs (see mlip.analysis.report).
"""

from __future__ import annotations

import argparse

from mlip.cli.common import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlip-bonds", description="Edge/bond energy decomposition (E3D) of a model.")
    p.add_argument("--model", required=True, help="model file (model.pt)")
    p.add_argument("--data", required=True, help="structures (extended XYZ or anything ASE reads); path, or "
                   "path@slice such as test.xyz@0:10")
    p.add_argument("--head", default=None, help="head to use for every frame (default: the model's default_head, e.g. a "
                   "fine-tuned model's finetune.default_head, else its first head)")
    p.add_argument("--method", default=None, choices=["readout", "attribution"],
                   help="readout (models with edge_energy_readout; the default for them) or attribution "
                   "(integrated gradients of edge gates; any model)")
    p.add_argument("--nodes", type=int, default=16, help="Gauss-Legendre nodes for attribution (default 16)")
    p.add_argument("--index", default=None, help="ASE index of the frames to analyse (default all); the same as "
                   "--data path@INDEX")
    p.add_argument("--energy-key", default="energy", help="reference energy key (optional, for e_coh_ref)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--bond-factor", type=float, default=1.2,
                   help="bond if r < factor * (R_cov_i + R_cov_j) and r < --max-bond (default 1.2)")
    p.add_argument("--max-bond", type=float, default=2.2, help="largest bond length in A (default 2.2)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    p.add_argument("--output", required=True, help="report folder")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from pathlib import Path

    from mlip.analysis.report import write_report
    from mlip.device import resolve_device
    from mlip.data.io import read_configurations, split_selection
    from mlip.errors import ConfigError, DataError
    from mlip.io.model_file import load_model

    if args.nodes < 1:
        raise ConfigError(f"--nodes: must be >= 1, got {args.nodes}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: must be >= 1, got {args.batch_size}")
    path, index = split_selection(args.data)
    if args.index is not None:
        if index != ":":
            raise ConfigError(f"--index {args.index}: --data {args.data} already selects frames; give one of them")
        path, index = split_selection(f"{path}@{args.index}")
    if not Path(path).is_file():
        raise DataError(f"{args.data}: file not found")
    device = resolve_device(args.device, key="--device")
    model = load_model(args.model, device=device)
    has_readout = getattr(model, "edge_readout", None) is not None
    method = args.method or ("readout" if has_readout else "attribution")
    if method == "readout" and not has_readout:
        raise ConfigError(f"--method readout: {args.model} has no edge-energy readout; use --method attribution")
    configs = read_configurations(path, energy_key=args.energy_key, index=index,
                                  allowed_numbers=model.atomic_numbers)
    summary = write_report(
        model, configs, args.output, head=args.head, method=method, nodes=args.nodes,
        batch_size=args.batch_size, factor=args.bond_factor, max_distance=args.max_bond, plots=not args.no_plots,
    )
    print(f"{summary['n_structures']} structures, {summary['n_edges']} edges, {summary['n_bonds']} bonds "
          f"({method}); largest completeness error {summary['max_completeness_error']:.3g} eV; "
          f"bond orders {summary['bond_orders']}")
    print((Path(args.output) / "bond_table.md").read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
