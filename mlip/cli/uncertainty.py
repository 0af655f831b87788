"""``mlip-uncertainty``: last-layer prediction rigidity (LLPR) for a trained model (docs/uncertainty.md).

``mlip-uncertainty fit --model model.pt --train train.xyz --valid valid.xyz -o model_llpr.pt`` accumulates
``H0`` over the training set and calibrates ``alpha^2`` and ``lambda`` on the validation set, per head, and
writes the model with its LLPR state (an ordinary model file). ``mlip-uncertainty show model_llpr.pt``
prints what a file holds.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from mlip.cli.common import run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlip-uncertainty", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit and calibrate LLPR; write model + LLPR to -o")
    fit.add_argument("--model", required=True, help="model file (mlip-train's model.pt)")
    fit.add_argument("--train", required=True, help="structures for H0 (the training set; labels not needed); "
                     "path, or path@slice such as train.xyz@0:1000")
    fit.add_argument("--valid", required=True, help="labelled structures for the calibration of alpha^2 and lambda "
                     "(path, or path@slice)")
    fit.add_argument("-o", "--output", required=True, help="model file to write (with the LLPR state)")
    fit.add_argument("--head", default=None, help="treat every frame as this head (default: the model's only "
                     "head, else each frame's 'head' key, else the model's default head)")
    fit.add_argument("--calibrate-on", default="energy,forces",
                     help="error terms of the likelihood: energy, forces or energy,forces [energy,forces]")
    fit.add_argument("--reg", type=float, default=None,
                     help="fix the regulariser lambda (units of H0) instead of fitting it")
    fit.add_argument("--batch-size", type=int, default=8, help="structures per batch (memory) [8]")
    fit.add_argument("--chunk-frames", type=int, default=2000,
                     help="read --train this many frames (of its selection) at a time (memory; H0 is streamed) [2000]")
    fit.add_argument("--energy-key", default="energy", help="energy label of --valid [energy]")
    fit.add_argument("--forces-key", default="forces", help="forces label of --valid [forces]")
    fit.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N [auto]")
    fit.add_argument("--dtype", default=None, choices=["float32", "float64"],
                     help="evaluate in this dtype [the model file's]; H0 is accumulated in float64")
    show = sub.add_parser("show", help="print the LLPR state of a model file")
    show.add_argument("model", help="model file written by mlip-uncertainty fit")
    return parser


def _windows(path: str, index: str, chunk: int) -> Iterator[str | slice]:
    """The selection ``index`` (ASE syntax) of ``path`` as consecutive windows of at most ``chunk`` frames, in
    the selection's order; all of it at once when ``chunk <= 0`` or it is one frame. A selection counted from
    the start is windowed without reading ahead (the caller stops at a short window); one counted from the
    end (negative start or stop) needs the number of frames, counted first. Steps are positive
    (:func:`mlip.data.io.split_selection`)."""
    from ase.io.formats import string2index

    from mlip.data.io import count_frames

    sel = string2index(index)
    if chunk <= 0 or not isinstance(sel, slice):
        yield index
        return
    step = sel.step or 1
    if (sel.start or 0) >= 0 and (sel.stop is None or sel.stop >= 0):
        lo = sel.start or 0
        while sel.stop is None or lo < sel.stop:
            hi = lo + chunk * step
            yield slice(lo, hi if sel.stop is None else min(hi, sel.stop), step)
            lo = hi
        return
    frames = range(*sel.indices(count_frames(path)))
    for k in range(0, len(frames), chunk):
        part = frames[k:k + chunk]
        yield slice(part.start, part.stop, part.step)


def _read(spec: str, model: Any, head: str | None, energy_key: str, forces_key: str, flag: str,
          chunk: int = 0) -> Iterator[Any]:
    """Configurations of ``spec`` (a file, or ``path@slice``: :func:`mlip.data.io.split_selection`) with heads
    checked against the model, isolated atoms dropped.

    ``chunk > 0`` yields them lazily, ``chunk`` frames of the selection read at a time (memory bounded for big
    training sets; :func:`_windows`).
    """
    from pathlib import Path

    from mlip.data.io import is_isolated_atom, read_configurations, split_selection
    from mlip.errors import DataError
    from mlip.nn.heads import frame_head, model_heads

    path, index = split_selection(spec)
    if not Path(path).is_file():
        raise DataError(f"{flag} {path}: file not found")
    heads, default = model_heads(model)
    allowed = [int(z) for z in model.atomic_numbers]
    kept = 0
    for n, window in enumerate(_windows(path, index, chunk)):
        try:
            configs = read_configurations(path, energy_key=energy_key, forces_key=forces_key,
                                          allowed_numbers=allowed, index=window)
        except DataError as err:
            if n == 0 or "no frames read" not in str(err):
                raise
            configs = []  # past the last frame
        for c in configs:
            where = "{}: frame {}".format(*c.source.rsplit(":", 1))
            c.head = frame_head(heads, c.head, head, default, key="--head", where=where)
            if not is_isolated_atom(c):
                kept += 1
                yield c
        if chunk <= 0 or len(configs) < chunk:
            break
    if not kept:
        raise DataError(f"{flag} {spec}: no frames besides isolated atoms")


def _fit(args: argparse.Namespace) -> int:
    from mlip.device import resolve_device, resolve_dtype
    from mlip.errors import ConfigError
    from mlip.io.model_file import load_model, read_model_info
    from mlip.uncertainty import fit_llpr, save_llpr_model

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: must be >= 1, got {args.batch_size}")
    if args.chunk_frames < 1:
        raise ConfigError(f"--chunk-frames: must be >= 1, got {args.chunk_frames}")
    terms = [t.strip() for t in args.calibrate_on.split(",") if t.strip()]
    if not terms or any(t not in ("energy", "forces") for t in terms):
        raise ConfigError(f"--calibrate-on: expected energy, forces or energy,forces, got {args.calibrate_on!r}")
    if args.reg is not None and not args.reg > 0:
        raise ConfigError(f"--reg: must be > 0, got {args.reg}")
    device = resolve_device(args.device, key="--device")
    dtype = resolve_dtype(args.dtype, key="--dtype") if args.dtype else None
    model = load_model(args.model, device=device, dtype=dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    valid = list(_read(args.valid, model, args.head, args.energy_key, args.forces_key, "--valid"))
    train = _read(args.train, model, args.head, args.energy_key, args.forces_key, "--train", args.chunk_frames)
    print(f"H0 from {args.train} (read {args.chunk_frames} frames at a time); calibration on {len(valid)} frames "
          f"of {args.valid}")
    llpr = fit_llpr(model, train, valid, batch_size=args.batch_size, device=device, calibrate_on=terms,
                    reg=args.reg, log=print)
    metadata = dict(read_model_info(args.model)[0].get("metadata") or {})
    metadata["llpr_sources"] = {"train": str(args.train), "valid": str(args.valid)}
    save_llpr_model(model.to(torch_dtype_of(args.model)), llpr, args.output, metadata=metadata)
    print(f"model with LLPR written to {args.output}")
    return 0


def torch_dtype_of(path: str) -> Any:
    """The dtype a model file stores (the written file keeps it whatever --dtype evaluated in)."""
    from mlip.device import resolve_dtype
    from mlip.io.model_file import read_model_info

    return resolve_dtype(read_model_info(path)[0].get("dtype", "float64"), key=f"{path}: dtype")


def _show(args: argparse.Namespace) -> int:
    from mlip.uncertainty import load_llpr

    llpr = load_llpr(args.model)
    for name, h in llpr.heads.items():
        print(f"head {name}: P = {h.gram.shape[0]}, H0 from {h.n_train} frames, alpha^2 = {h.alpha2:.6g}, "
              f"lambda = {h.reg:.6g}, calibrated on {h.n_valid} frames ({'+'.join(h.calibrated_on) or '-'}), "
              f"NLL/term = {h.nll:.4f}")
    return 0


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    return _fit(args) if args.command == "fit" else _show(args)


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``mlip-uncertainty``."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
