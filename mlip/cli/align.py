"""``mlip-align``: move labels of one data set onto another's energy reference.

Subcommands:

- ``tea``: Total Energy Alignment (ICEA + AEC, MACE-Osaka24) with isolated-atom energies of both levels,
  a given scale (``--scale``; ``--scale 1`` is plain ICEA) or one fitted on paired frames (``--pairs``).
  Writes OUT.xyz and OUT.json (scale, E0s, RMSEs on the pairs).
- ``shifts``: NEP89 per-element shifts fitted against a trained model's predictions; ``--drop-energy``
  keeps forces/stress but gives the energies weight 0 (``config_energy_weight=0``).

The logic lives in :mod:`mlip.fidelity.tea` and :mod:`mlip.fidelity.shifts`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mlip.cli.common import run_cli
from mlip.errors import ConfigError


def _add_keys(p: argparse.ArgumentParser) -> None:
    p.add_argument("--energy-key", default="energy", help="info key of total energies (eV) [energy]")
    p.add_argument("--forces-key", default="forces", help="arrays key of forces (eV/A) [forces]")
    p.add_argument("--stress-key", default="stress", help="info key of stress (eV/A^3) [stress]")
    p.add_argument("--virials-key", default="virials", help="info key of virials (eV) [virials]")


def _keys(args: argparse.Namespace):
    from mlip.fidelity.labels import LabelKeys

    return LabelKeys(args.energy_key, args.forces_key, args.stress_key, args.virials_key)


def _json_path(out: str) -> Path:
    return Path(out).with_suffix(".json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlip-align", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    tea = sub.add_parser("tea", help="Total Energy Alignment (ICEA + AEC) of a source data set to a target level")
    tea.add_argument("--data", required=True, help="source-level frames to align (path, or path@slice)")
    tea.add_argument("--source-atoms", required=True,
                     help="isolated-atom energies of the source level: xyz of single atoms, JSON, or H=..,C=..")
    tea.add_argument("--target-atoms", required=True, help="isolated-atom energies of the target level (same forms)")
    how = tea.add_mutually_exclusive_group(required=True)
    how.add_argument("--scale", type=float, help="AEC scale a (1 = ICEA only)")
    how.add_argument("--pairs", nargs=2, metavar=("SRC_PAIRS", "TARGET_PAIRS"),
                     help="the same geometries at both levels, frame by frame; a is fitted on them")
    tea.add_argument("-o", "--output", required=True, help="aligned extxyz (a JSON record goes next to it)")
    tea.add_argument("--pair-atol", type=float, default=1e-4, help="position tolerance (A) when checking pairs")
    tea.add_argument("--dispersion", choices=["none", "d3bj"], default="none",
                     help="remove a D3(BJ) correction from the source labels first (needs torch-dftd or dftd3)")
    tea.add_argument("--dispersion-functional", default="pbe", help="functional for the D3 parameters [pbe]")
    tea.add_argument("--keep-forces", action="store_true",
                     help="scale only atomization energies by a; keep forces/stress (not in Osaka24)")
    tea.add_argument("--inverse", action="store_true",
                     help="map target-level labels back to the source level (needs --scale)")
    _add_keys(tea)

    sh = sub.add_parser("shifts", help="NEP89 per-element shifts against a trained model")
    sh.add_argument("--model", help="model file trained on the reference data (required unless only --drop-energy)")
    sh.add_argument("--data", required=True, help="frames to align (path, or path@slice)")
    sh.add_argument("-o", "--output", required=True, help="aligned extxyz (a JSON record goes next to it)")
    sh.add_argument("--drop-energy", action="store_true",
                    help="keep forces/stress, set config_energy_weight=0 on every frame")
    sh.add_argument("--head", default=None,
                    help="model head whose energies are the reference [the model's default_head, else its only head]")
    sh.add_argument("--batch-size", type=int, default=16)
    sh.add_argument("--device", default=None, help="torch device [cuda if available, else cpu]")
    _add_keys(sh)
    return parser


def _tea(args: argparse.Namespace) -> int:
    from mlip.fidelity.labels import load_isolated_energies, read_structures, write_extxyz, write_json
    from mlip.fidelity.tea import align_structures, check_pairs, d3_correction, run_tea

    keys = _keys(args)
    if args.inverse and args.scale is None:
        raise ConfigError("--inverse needs --scale (the a used for the forward alignment)")
    dispersion = None
    name = None
    if args.dispersion == "d3bj":
        dispersion = d3_correction(args.dispersion_functional, "bj")
        name = f"d3bj-{args.dispersion_functional}"
    e0_src = load_isolated_energies(args.source_atoms, args.energy_key)
    e0_tgt = load_isolated_energies(args.target_atoms, args.energy_key)
    data = read_structures(args.data)
    if args.inverse:
        aligned = align_structures(data, e0_src, e0_tgt, args.scale, keys, dispersion, inverse=True, path=args.data,
                                   scale_forces=not args.keep_forces)
        record = {"method": "tea_inverse", "scale": args.scale, "n_frames": len(aligned), "dispersion": name,
                  "rmse_raw": None, "rmse_icea": None, "rmse_tea": None}
    else:
        pairs = None
        if args.pairs:
            pairs = (read_structures(args.pairs[0]), read_structures(args.pairs[1]))
            check_pairs(pairs[0], pairs[1], args.pairs[0], args.pairs[1], atol=args.pair_atol)
        aligned, record = run_tea(data, e0_src, e0_tgt, args.scale, pairs, keys, dispersion, name,
                                  data_path=args.data, pair_paths=tuple(args.pairs) if args.pairs else ("", ""),
                                  scale_forces=not args.keep_forces)
    record.update({"data": args.data, "pairs": args.pairs, "source_atoms": args.source_atoms,
                   "target_atoms": args.target_atoms, "output": args.output})
    write_extxyz(args.output, aligned)
    json_path = _json_path(args.output)
    write_json(json_path, record)

    def fmt(v):
        return "null" if v is None else f"{v:.4f}"

    print(f"aligned {len(aligned)} frames -> {args.output} (record {json_path}); a = {record['scale']:.6f}; "
          f"energy RMSE on pairs raw/icea/tea = {fmt(record.get('rmse_raw'))}/{fmt(record.get('rmse_icea'))}/"
          f"{fmt(record.get('rmse_tea'))} eV")
    return 0


def _shifts(args: argparse.Namespace) -> int:
    from mlip.fidelity.labels import get_energy, get_forces, get_tensor, read_structures, with_labels, write_extxyz, write_json
    from mlip.fidelity.shifts import shift_structures

    keys = _keys(args)
    data = read_structures(args.data)
    if args.model is None:
        if not args.drop_energy:
            raise ConfigError("mlip-align shifts needs --model (or --drop-energy alone to only zero energy weights)")
        aligned = []
        for atoms in data:
            out = with_labels(atoms, keys, get_energy(atoms, keys.energy), get_forces(atoms, keys.forces),
                              get_tensor(atoms, keys.stress), get_tensor(atoms, keys.virials))
            out.info["config_energy_weight"] = 0.0
            aligned.append(out)
        record = {"method": "drop_energy", "shifts": None, "drop_energy": True, "n_frames": len(aligned)}
    else:
        from mlip.device import resolve_device
        from mlip.fidelity.descriptors import model_outputs
        from mlip.io.model_file import load_model

        device = resolve_device(args.device, key="--device")
        model = load_model(args.model, device=device)
        pred = model_outputs(model, data, batch_size=args.batch_size, head=args.head, device=device)["energy"]
        aligned, record = shift_structures(data, pred, keys, args.drop_energy, path=args.data)
        record["model"] = args.model
        record["head"] = args.head
    record.update({"data": args.data, "output": args.output})
    write_extxyz(args.output, aligned)
    json_path = _json_path(args.output)
    write_json(json_path, record)
    shifts = record.get("shifts")
    text = ", ".join(f"{k} {v:+.4f}" for k, v in shifts.items()) if shifts else "none"
    print(f"wrote {len(aligned)} frames -> {args.output} (record {json_path}); shifts (eV): {text}"
          + ("; energy weight 0" if args.drop_energy else ""))
    return 0


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "tea":
        return _tea(args)
    return _shifts(args)


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``mlip-align``."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
