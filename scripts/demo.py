#!/usr/bin/env python
"""`make demo`: summarise the bundled acac data, train a small model (configs/demo.yaml) into runs/demo/,
then evaluate it on data/acac/test.xyz and print the error table.

Run from the repository root. Takes a few minutes on 2 CPU cores. Extra arguments are config overrides,
e.g. ``python scripts/demo.py train.max_epochs=5``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    os.chdir(REPO)
    from mlip.cli.eval import main as eval_main
    from mlip.cli.train import main as train_main
    from mlip.data.summary import summarize_files

    t0 = time.perf_counter()
    print("=" * 30, "data", "=" * 30)
    print(summarize_files(["data/acac/train.xyz", "data/acac/test.xyz"]))
    run = REPO / "runs" / "demo"
    if (run / "checkpoints").is_dir():
        print(f"removing the previous demo run in {run}")
        shutil.rmtree(run)
    print("=" * 30, "training (configs/demo.yaml)", "=" * 30, flush=True)
    rc = train_main(["--config", "configs/demo.yaml", "output_dir=runs/demo", *argv])
    if rc:
        return rc
    print("=" * 30, "evaluation on data/acac/test.xyz", "=" * 30, flush=True)
    rc = eval_main([
        "--model", "runs/demo/model.pt", "--data", "data/acac/test.xyz",
        "--output", "runs/demo/test_predictions.xyz", "--json", "runs/demo/test_metrics.json",
    ])
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; run directory: runs/demo/ "
          "(model.pt, metrics.jsonl, learning_curve.png, test_predictions.xyz)")
    return rc


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
