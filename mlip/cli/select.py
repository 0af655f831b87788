"""``mlip-select``: choose a diverse subset of frames in descriptor space (NEP89).

Descriptors: a trained model's mean-pooled invariant node features (``--model``), else the model-free
radial element-pair descriptor of :mod:`mlip.fidelity.descriptors`. Selection: farthest-point sampling to
``-n`` frames (start: the frame farthest from the mean descriptor, or a random one with ``--seed``) or
NEP89's greedy ``--dmin`` filter in file order. Writes the subset as extxyz (frames unchanged) and,
with ``--plot``, a PNG of the 2-D PCA projection of all frames with the selected ones highlighted.
"""

from __future__ import annotations

import argparse

from mlip.cli.common import run_cli
from mlip.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlip-select", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="frames to choose from (path, or path@slice)")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("-n", type=int, help="number of frames (farthest-point sampling)")
    how.add_argument("--dmin", type=float, help="minimum descriptor distance (NEP89 greedy filter, file order)")
    parser.add_argument("--model", help="model file: use its mean-pooled node features as descriptors")
    parser.add_argument("-o", "--output", required=True, help="subset extxyz")
    parser.add_argument("--plot", help="PNG of the PCA projection, selected against all")
    parser.add_argument("--indices", help="also write the selected frame indices (one per line, selection order)")
    parser.add_argument("--seed", type=int, default=None, help="FPS starts from a random frame drawn with this seed")
    parser.add_argument("--cutoff", type=float, default=5.0, help="radial descriptor cutoff (A) [5]")
    parser.add_argument("--n-radial", type=int, default=8, help="radial descriptor Gaussians per element pair [8]")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size for --model")
    parser.add_argument("--device", default=None, help="torch device for --model [cuda if available, else cpu]")
    unc = parser.add_argument_group("uncertainty-driven selection (docs/uncertainty.md)")
    unc.add_argument("--uncertainty", action="store_true", help="pick the -n frames with the highest predicted "
                     "uncertainty: LLPR stored in --model (mlip-uncertainty fit), or a committee (--committee)")
    unc.add_argument("--committee", nargs="+", metavar="MODEL", help="more model files: committee of --model and these")
    unc.add_argument("--score", choices=["forces", "energy"], default="forces", help="forces: predicted force RMSE "
                     "of the frame (eV/A); energy: predicted energy sigma per atom (eV/atom) [forces]")
    unc.add_argument("--pool-factor", type=float, default=1.0, help="> 1: take the pool-factor * n most uncertain "
                     "frames and thin them to n by FPS in model-descriptor space (diversity) [1]")
    unc.add_argument("--head", default=None, help="head for the uncertainty (default: the model's only/default head)")
    unc.add_argument("--force-samples", type=int, default=None, metavar="K", help="LLPR force uncertainties from K "
                     "random posterior directions (K backward passes per batch instead of one per last-layer "
                     "feature; relative noise about sqrt(2/K) per component) [exact]")
    return parser


def _main(argv: list[str] | None) -> int:
    from mlip.fidelity.descriptors import radial_descriptors
    from mlip.fidelity.labels import read_structures, write_extxyz
    from mlip.files import atomic_write_text
    from mlip.fidelity.select import dmin_filter, farthest_point_sampling, plot_selection

    args = build_parser().parse_args(argv)
    if args.n is not None and args.n < 1:
        raise ConfigError(f"-n must be >= 1, got {args.n}")
    data = read_structures(args.data)
    if args.uncertainty or args.committee:
        return _select_uncertain(args, data)
    if args.model:
        from mlip.device import resolve_device
        from mlip.fidelity.descriptors import model_descriptors
        from mlip.io.model_file import load_model

        device = resolve_device(args.device, key="--device")
        model = load_model(args.model, device=device)
        x = model_descriptors(model, data, batch_size=args.batch_size, device=device)
        kind = "model node features"
    else:
        x = radial_descriptors(data, cutoff=args.cutoff, n_radial=args.n_radial)
        kind = "radial pair descriptor"
    if args.n is not None:
        chosen = farthest_point_sampling(x, args.n, seed=args.seed)
        how = f"FPS to {args.n}"
    else:
        chosen = dmin_filter(x, args.dmin)
        how = f"d_min {args.dmin:g}"
    write_extxyz(args.output, [data[int(k)] for k in chosen])
    if args.indices:
        atomic_write_text(args.indices, "".join(f"{int(k)}\n" for k in chosen))
    if args.plot:
        plot_selection(x, chosen, args.plot, title=f"{how} ({kind})")
    print(f"selected {len(chosen)} of {len(data)} frames ({how}, {kind}) -> {args.output}"
          + (f"; plot {args.plot}" if args.plot else ""))
    return 0


def _select_uncertain(args: argparse.Namespace, data: list) -> int:
    """``--uncertainty``: score every frame by predicted uncertainty, pick the top -n (FPS-thinned with --pool-factor)."""
    from mlip.device import resolve_device
    from mlip.fidelity.descriptors import model_descriptors
    from mlip.fidelity.labels import write_extxyz
    from mlip.fidelity.select import plot_selection, select_by_score
    from mlip.files import atomic_write_text
    from mlip.uncertainty import load_potential, uncertainty_scores

    if not (args.uncertainty and args.model and args.n is not None):
        raise ConfigError("--uncertainty needs --model (with LLPR, or --committee) and -n; --committee needs --uncertainty")
    device = resolve_device(args.device, key="--device")
    potential = load_potential(args.model, args.committee or (), device=device, force_samples=args.force_samples)
    scores = uncertainty_scores(potential, data, args.score, args.head, args.batch_size, device)
    x = model_descriptors(potential.model, data, batch_size=args.batch_size, device=device)
    chosen = select_by_score(scores, args.n, x if args.pool_factor > 1 else None, args.pool_factor)
    write_extxyz(args.output, [data[int(k)] for k in chosen])
    if args.indices:
        atomic_write_text(args.indices, "".join(f"{int(k)}\n" for k in chosen))
    what = f"{'committee' if args.committee else 'LLPR'} {args.score} uncertainty"
    if args.plot:
        plot_selection(x, chosen, args.plot, title=f"top {args.n} by {what}")
    print(f"selected {len(chosen)} of {len(data)} frames (highest {what}"
          + (f", FPS over the top {args.pool_factor:g} x n" if args.pool_factor > 1 else "")
          + f"; scores {scores[chosen].min():.4g}..{scores[chosen].max():.4g} of {scores.min():.4g}..{scores.max():.4g})"
          + f" -> {args.output}" + (f"; plot {args.plot}" if args.plot else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``mlip-select``."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
