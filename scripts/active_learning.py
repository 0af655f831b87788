#!/usr/bin/env python
"""Active-learning loop from the command-line tools: mlip-train -> mlip-uncertainty fit -> mlip-select -> repeat.

Round r (0..rounds):
  1. ``mlip-train --config CONFIG data.train=<round r>/train.xyz data.valid=VALID output_dir=<round r>/run seed=SEED``
     (retraining from scratch on the grown set; extra ``key=value`` overrides are passed through);
  2. ``mlip-eval`` on each ``--test`` file (force and energy RMSE into ``results.json``);
  3. unless it is the last round, pick ``--per-round`` frames from what is left of ``--pool``:
     ``uncertainty``: ``mlip-uncertainty fit`` (H0 on the round's training set, calibration on VALID), then
     ``mlip-select --uncertainty -n K [--pool-factor F]``; ``committee``: ``--committee-size`` - 1 more models
     trained on the round's set (seeds SEED + 1000 k), then ``mlip-select --uncertainty --committee``;
     ``random``: a seeded random draw.
     The picked frames (with their reference labels from the pool file) join the training set.

A round whose ``train.xyz`` is unchanged and whose model exists is not retrained (an interrupted loop
continues; a loop can start from another loop's round 0).

Example (acac, see docs/uncertainty.md)::

    OMP_NUM_THREADS=1 python scripts/active_learning.py --config configs/acac.yaml \\
        --train start.xyz --valid valid.xyz --pool ../shared/data/acac/train_600K.xyz \\
        --test ../shared/data/acac/test_MD_600K.xyz --rounds 2 --per-round 50 --strategy uncertainty \\
        --out al_unc train.max_epochs=100

Writes ``<out>/results.json``: one record per round (training-set size, picked pool indices, test errors).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

BIN = Path(sys.executable).parent


def cli(name: str, *args: Any) -> None:
    """Run an mlip command (the console script next to this Python); stop with its message on failure."""
    cmd = [str(BIN / name), *map(str, args)]
    print("+", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, text=True, capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")


def write_frames(path: Path, frames: list) -> None:
    import ase.io

    path.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(path, frames, format="extxyz")


def test_errors(model: Path, tests: list[str], work: Path, extra: list[str]) -> dict[str, Any]:
    """mlip-eval --json on each test file: {file name: {forces_rmse, energy_rmse_per_atom, ...}} (eV units)."""
    out = {}
    for k, test in enumerate(tests):
        js = work / f"test{k}.json"
        cli("mlip-eval", "--model", model, "--data", test, "--json", js, *extra)
        out[Path(test).name] = json.loads(js.read_text())
    return out


def train_model(config: str, train_file: Path, valid: str, run: Path, seed: int, overrides: list[str]) -> Path:
    """mlip-train into ``run`` (skipped when ``run/model.pt`` exists and was trained on this ``train_file``)."""
    model = run / "model.pt"
    stamp = run / "trained_on.xyz"
    if not (model.is_file() and stamp.is_file() and stamp.read_bytes() == train_file.read_bytes()):
        cli("mlip-train", "--config", config, f"data.train={train_file}", f"data.valid={valid}", "data.test=[]",
            f"output_dir={run}", f"seed={seed}", "train.progress=false", "train.plot=false", *overrides)
        stamp.write_bytes(train_file.read_bytes())
    return model


def pick(strategy: str, model: Path, train: Path, valid: str, pool: list, k: int, work: Path, seed: int,
         options: dict[str, Any]) -> list[int]:
    """Indices into ``pool`` of the ``k`` frames to label next.

    ``options``: ``pool_factor`` (mlip-select --pool-factor), ``force_samples`` (mlip-select --force-samples,
    LLPR; None: exact), ``committee_size``, and for ``committee`` the ``config``, ``overrides`` and
    ``train_seed`` of the members' mlip-train.
    """
    if strategy == "random":
        return sorted(np.random.default_rng(seed).choice(len(pool), size=min(k, len(pool)), replace=False).tolist())
    if strategy == "committee":
        members = [train_model(options["config"], train, valid, work / f"member{m}", options["train_seed"] + 1000 * m,
                               options["overrides"]) for m in range(1, options["committee_size"])]
        source, extra = model, ["--committee", *members]
    else:
        source, extra = work / "model_llpr.pt", []
        cli("mlip-uncertainty", "fit", "--model", model, "--train", train, "--valid", valid, "-o", source)
    write_frames(work / "pool.xyz", pool)
    idx = work / "picked.txt"
    if strategy == "uncertainty" and options.get("force_samples"):
        extra = ["--force-samples", options["force_samples"]]
    cli("mlip-select", "--uncertainty", "--model", source, "--data", work / "pool.xyz", "-n", k, "-o",
        work / "picked.xyz", "--indices", idx, "--pool-factor", options["pool_factor"], "--device", "cpu", *extra)
    return [int(x) for x in idx.read_text().split()]


def active_learning(config: str, train: str, valid: str, pool: str, tests: list[str], rounds: int, per_round: int,
                    strategy: str, out: Path, seed: int = 1, overrides: list[str] = (), pool_factor: float = 1.0,
                    committee_size: int = 4, force_samples: int | None = None) -> list[dict[str, Any]]:
    """The loop of the module docstring; returns (and writes to ``out/results.json``) one record per round.

    A finished loop (``out/results.json`` with all rounds of this strategy and seed) is not rerun: its records
    are returned, so an interrupted experiment can be continued with more seeds.
    """
    import ase.io

    done = out / "results.json"
    if done.is_file():
        old = json.loads(done.read_text())
        if len(old) == rounds + 1 and all(r.get("strategy") == strategy and r.get("seed") == seed for r in old):
            print(f"{out}: finished earlier, reusing its results", flush=True)
            return old

    train_frames = ase.io.read(train, ":")
    pool_frames = ase.io.read(pool, ":")
    remaining = list(range(len(pool_frames)))  # pool indices not yet picked
    records: list[dict[str, Any]] = []
    for r in range(rounds + 1):
        work = out / f"round{r}"
        train_file = work / "train.xyz"
        write_frames(train_file, train_frames)
        model = train_model(config, train_file, valid, work / "run", seed, list(overrides))
        record: dict[str, Any] = {"round": r, "n_train": len(train_frames), "strategy": strategy, "seed": seed,
                                  "test": test_errors(model, tests, work, [])}
        if r < rounds:
            options = {"pool_factor": pool_factor, "committee_size": committee_size, "config": config,
                       "overrides": list(overrides), "train_seed": seed, "force_samples": force_samples}
            local = pick(strategy, model, train_file, valid, [pool_frames[i] for i in remaining], per_round, work,
                         seed * 1000 + r, options)
            picked = [remaining[i] for i in local]
            record["picked_pool_indices"] = picked
            train_frames += [pool_frames[i] for i in picked]
            taken = set(picked)
            remaining = [i for i in remaining if i not in taken]
        records.append(record)
        (out / "results.json").write_text(json.dumps(records, indent=1))
        f_rmse = {name: round(1e3 * m["forces_rmse"], 2) for name, m in record["test"].items()}
        print(f"round {r}: {record['n_train']} training frames, "
              f"force RMSE (meV/A) {f_rmse}", flush=True)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--train", required=True, help="initial labelled training frames")
    parser.add_argument("--valid", required=True, help="labelled validation frames (early stopping, LLPR calibration)")
    parser.add_argument("--pool", required=True, help="labelled candidate frames (labels revealed when picked)")
    parser.add_argument("--test", nargs="+", default=[], help="test files evaluated after each round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--strategy", choices=["uncertainty", "committee", "random"], default="uncertainty")
    parser.add_argument("--committee-size", type=int, default=4, help="models in the committee (strategy committee)")
    parser.add_argument("--force-samples", type=int, default=None, help="mlip-select --force-samples (LLPR) [exact]")
    parser.add_argument("--pool-factor", type=float, default=1.0, help="mlip-select --pool-factor (FPS diversity)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("overrides", nargs="*", help="config overrides for every mlip-train (key=value)")
    args = parser.parse_args()
    active_learning(args.config, args.train, args.valid, args.pool, args.test, args.rounds, args.per_round,
                    args.strategy, args.out, args.seed, args.overrides, args.pool_factor, args.committee_size,
                    args.force_samples)


if __name__ == "__main__":
    main()
