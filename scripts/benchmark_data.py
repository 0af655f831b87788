#!/usr/bin/env python
"""Benchmark of the data pipeline for large training sets (numbers in docs/scale-out.md).

Measures, on synthetic periodic frames written with the on-disk writer (mlip.data.ondisk):

1. loader-alone throughput (configs/s): in-memory graphs (mlip.data.batch.make_loader) against the lazy
   on-disk dataset (neighbour lists computed in the workers), with 0/2/4 DataLoader workers;
2. training throughput (configs/s, forward + forces + backward + Adam step of a small model) for the same
   loaders;
3. peak RSS against dataset size: a fresh process opens a 20k- or 200k-frame file and trains/iterates
   over the same number of batches drawn from the whole (shuffled) file; main process and largest worker.

Usage (reduced run; the machine's cores bound the worker scaling):
    OMP_NUM_THREADS=1 python scripts/benchmark_data.py --sizes 20000 200000 --loader-frames 1024 \
        --train-batches 20 --workers 0 2 4 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

R_MAX = 5.0
SMALL_MODEL = {
    "hidden_irreps": "16x0e + 16x1o", "max_ell": 2, "correlation": 2, "num_interactions": 2,
    "r_max": R_MAX, "num_bessel": 8, "radial_mlp": [32, 32], "mlp_irreps": "16x0e",
}


def synthetic_frames(n: int, atoms_per_frame: int = 8, seed: int = 0):
    """Perturbed diamond-like cells (a = 5.43 A) of Si/C/O with random labels; generated one at a time."""
    from mlip.data.configuration import Configuration

    base = np.array([[0, 0, 0], [0, 2, 2], [2, 0, 2], [2, 2, 0], [3, 3, 3], [3, 1, 1], [1, 3, 1], [1, 1, 3]]) / 4.0
    rng = np.random.default_rng(seed)
    for k in range(n):
        a = 5.43 * (1 + 0.02 * rng.standard_normal())
        frac = base[np.arange(atoms_per_frame) % 8]
        pos = frac * a + 0.1 * rng.standard_normal((atoms_per_frame, 3))
        yield Configuration(
            numbers=rng.choice([6, 8, 14], atoms_per_frame, p=[0.2, 0.2, 0.6]), positions=pos,
            cell=np.eye(3) * a, pbc=np.ones(3, bool), energy=float(-5.0 * atoms_per_frame + rng.standard_normal()),
            forces=rng.standard_normal((atoms_per_frame, 3)), stress=0.01 * rng.standard_normal((3, 3)),
            config_type="synthetic", source=f"synthetic:{k}",
        )


def write_file(path: Path, n: int) -> float:
    from mlip.data.ondisk import write_ondisk

    if path.exists():
        return 0.0
    t = time.perf_counter()
    write_ondisk(synthetic_frames(n), path, R_MAX, e0s="fit", total=n, progress=False, chunk=2048)
    return time.perf_counter() - t


def _loaders(path: Path, n_frames: int, batch: int, workers: int, in_memory: bool):
    import torch

    from mlip.data.batch import make_loader
    from mlip.data.ondisk import OnDiskDataset, make_ondisk_loader

    ds = OnDiskDataset(path, R_MAX)
    sub = ds.subset(np.random.default_rng(0).choice(len(ds), size=min(n_frames, len(ds)), replace=False))
    if in_memory:
        graphs = [sub[i] for i in range(len(sub))]
        return make_loader(graphs, batch, shuffle=True, seed=1, dtype=torch.float64, num_workers=workers), ds
    return make_ondisk_loader(sub, batch, shuffle=True, seed=1, dtype=torch.float64, num_workers=workers), ds


def loader_throughput(path: Path, n_frames: int, batch: int, workers: int, in_memory: bool) -> float:
    """configs/s of iterating one epoch (worker start-up included for on-disk, excluded for in-memory
    graph building)."""
    loader, _ = _loaders(path, n_frames, batch, workers, in_memory)
    loader.set_epoch(1)
    t = time.perf_counter()
    count = sum(int(b["ptr"].numel() - 1) for b in loader)
    return count / (time.perf_counter() - t)


def _model(ds: Any):
    import torch

    from mlip.nn.hparams import ModelHyperparameters
    from mlip.nn.model import build_model

    st = ds.files[0].statistics["Default"]
    zs = ds.files[0].atomic_numbers
    hp = ModelHyperparameters(atomic_numbers=zs, heads=["Default"], atomic_energies=[[st["e0s"][str(z)] for z in zs]],
                              scale=[st["rms_forces"]], shift=[st["mean_interaction_energy"]],
                              avg_num_neighbors=st["avg_num_neighbors"], **SMALL_MODEL)
    torch.manual_seed(0)
    return build_model(hp, dtype=torch.float64)


def train_throughput(path: Path, n_batches: int, batch: int, workers: int, in_memory: bool) -> float:
    """configs/s of training steps (first step excluded: warm-up)."""
    import torch

    from mlip.train.loss import LossWeights, WeightedLoss

    loader, ds = _loaders(path, n_batches * batch, batch, workers, in_memory)
    model = _model(ds)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    loss_fn = WeightedLoss("mse", LossWeights(1.0, 10.0, 0.0, 0.0), 0.01, [1.0])
    loader.set_epoch(1)
    count, t = 0, None
    for k, b in enumerate(loader):
        if k == 1:
            t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(b, compute_forces=True, compute_stress=False, training=True)
        loss, _ = loss_fn(b, out)
        loss.backward()
        opt.step()
        if k >= 1:
            count += int(b["ptr"].numel() - 1)
    assert t is not None
    return count / (time.perf_counter() - t)


def rss_child(path: str, workers: int, n_batches: int, batch: int, mode: str) -> dict[str, float]:
    """In a fresh process: open ``path``, run ``n_batches`` batches drawn from the whole shuffled file
    (``mode`` 'loader' or 'train'); peak RSS (MB) of this process and of its largest worker."""
    import torch

    from mlip.data.ondisk import OnDiskDataset, make_ondisk_loader

    ds = OnDiskDataset(path, R_MAX)
    loader = make_ondisk_loader(ds, batch, shuffle=True, seed=1, dtype=torch.float64, num_workers=workers)
    loader.set_epoch(1)
    model = _model(ds) if mode == "train" else None
    opt = torch.optim.Adam(model.parameters(), lr=1e-3) if model is not None else None
    for k, b in enumerate(loader):
        if model is not None:
            opt.zero_grad(set_to_none=True)
            out = model(b, compute_forces=True, training=True)
            ((out["energy"] - b["energy"]) ** 2).mean().backward()
            opt.step()
        if k + 1 >= n_batches:
            break
    del loader  # shut the workers down so that their peak RSS is accounted to RUSAGE_CHILDREN
    import gc

    gc.collect()
    time.sleep(0.5)
    return {"main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def peak_rss(path: Path, workers: int, n_batches: int, batch: int, mode: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--_rss", str(path), str(workers), str(n_batches), str(batch), mode],
                         capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="/tmp/mlip_bench_data")
    p.add_argument("--sizes", type=int, nargs="+", default=[20000, 200000])
    p.add_argument("--loader-frames", type=int, default=1024)
    p.add_argument("--train-batches", type=int, default=20)
    p.add_argument("--rss-batches", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    p.add_argument("--skip", nargs="*", default=[], choices=["loader", "train", "rss"])
    p.add_argument("--json", default=None)
    p.add_argument("--_rss", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._rss:
        path, w, nb, bs, mode = args._rss
        print(json.dumps(rss_child(path, int(w), int(nb), int(bs), mode)))
        return 0
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"cpus": os.cpu_count(), "omp_threads": os.environ.get("OMP_NUM_THREADS"),
                              "batch_size": args.batch_size, "atoms_per_frame": 8, "r_max": R_MAX, "model": SMALL_MODEL}
    files = {}
    for n in args.sizes:
        files[n] = work / f"synthetic_{n}.h5"
        dt = write_file(files[n], n)
        if dt:
            result[f"write_{n}_s"] = dt
            print(f"wrote {n} frames in {dt:.1f} s ({n / dt:.0f} frames/s)", flush=True)
        result[f"file_{n}_mb"] = files[n].stat().st_size / 2**20
    small = files[min(args.sizes)]
    if "loader" not in args.skip:
        for in_memory in (True, False):
            for w in args.workers:
                key = f"loader_{'memory' if in_memory else 'disk'}_w{w}"
                result[key] = loader_throughput(small, args.loader_frames, args.batch_size, w, in_memory)
                print(f"{key}: {result[key]:.0f} configs/s", flush=True)
    if "train" not in args.skip:
        for in_memory in (True, False):
            for w in args.workers:
                key = f"train_{'memory' if in_memory else 'disk'}_w{w}"
                result[key] = train_throughput(small, args.train_batches, args.batch_size, w, in_memory)
                print(f"{key}: {result[key]:.1f} configs/s", flush=True)
    if "rss" not in args.skip:
        for n, path in files.items():
            for mode in ("loader", "train"):
                key = f"rss_{mode}_{n}"
                result[key] = peak_rss(path, 2, args.rss_batches, args.batch_size, mode)
                print(f"{key}: {result[key]}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
