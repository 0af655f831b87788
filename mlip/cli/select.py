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
    return parser


def _main(argv: list[str] | None) -> int:
    from mlip.fidelity.descriptors import radial_descriptors
    from mlip.fidelity.labels import atomic_write_text, read_structures, write_extxyz
    from mlip.fidelity.select import dmin_filter, farthest_point_sampling, plot_selection

    args = build_parser().parse_args(argv)
    if args.n is not None and args.n < 1:
        raise ConfigError(f"-n must be >= 1, got {args.n}")
    data = read_structures(args.data)
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


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``mlip-select``."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
