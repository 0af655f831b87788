"""2 ranks (gloo, CPU, float64) with batch B per rank follow the same loss trajectory, step by step, as one
process with batch 2B: the union of the ranks' batches is the single-process batch, and DDP's gradient
average equals the gradient of the single-process mean loss (all acac frames have 15 atoms)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from dist_support import ACAC, TINY_MODEL, free_port, slice_xyz

B = 3
STEPS_PER_EPOCH = 2
EPOCHS = 2


def _graphs(xyz: Path) -> list[dict]:
    from mlip.data.graph import configuration_to_graph
    from mlip.data.io import read_configurations

    return [configuration_to_graph(c, TINY_MODEL["r_max"], ["Default"]) for c in read_configurations(xyz)]


def _train_steps(hooks, graphs: list[dict]) -> tuple[list[float], dict[str, torch.Tensor], list[list[float]]]:
    """A few optimiser steps with the library pieces the trainer uses; returns per-step global losses."""
    from mlip.data.batch import make_loader
    from mlip.nn.hparams import ModelHyperparameters
    from mlip.nn.model import build_model
    from mlip.train.loss import LossWeights, WeightedLoss

    torch.manual_seed(11)
    hp = ModelHyperparameters(atomic_numbers=[1, 6, 8], heads=["Default"],
                              atomic_energies=[[-13.6, -1026.9, -2037.8]], scale=[1.0], shift=[-4.86],
                              avg_num_neighbors=9.7, **TINY_MODEL)
    model = build_model(hp, dtype=torch.float64)
    module = hooks.wrap_model(model)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, amsgrad=True)
    loss_fn = WeightedLoss("mse", LossWeights(1.0, 100.0, 0.0, 0.0), 0.01, [1.0])
    loader = make_loader(graphs, (2 * B) // hooks.world_size, shuffle=True, seed=7,
                         num_replicas=hooks.world_size, rank=hooks.rank)
    losses, frames = [], []
    for epoch in range(1, EPOCHS + 1):
        loader.set_epoch(epoch)
        for batch in loader:
            opt.zero_grad(set_to_none=True)
            out = module(batch, compute_forces=True, compute_stress=False, training=True)
            loss, _ = loss_fn(batch, out)
            loss.backward()
            opt.step()
            losses.append(float(hooks.all_reduce_sum(loss.detach()) / hooks.world_size))
            frames.append(batch["energy"].tolist())
    return losses, {k: v.detach().clone() for k, v in model.state_dict().items()}, frames


def _check_collectives(ctx, out: str) -> None:
    """run_on_main returns rank 0's value everywhere and re-raises rank 0's error on every rank;
    reduce_eval gathers sharded per-frame errors; all_true is a logical and over ranks."""
    from mlip.errors import DataError
    from mlip.train.metrics import FrameErrors

    report = {"value": ctx.run_on_main(lambda: {"rank": ctx.rank})}

    def fail():
        raise DataError("stats.xyz: frame 3: key 'energy': boom")

    try:
        ctx.run_on_main(fail)
        report["error"] = None
    except DataError as err:
        report["error"] = str(err)
    errors = FrameErrors(head=["h"] * (ctx.rank + 1), config_type=["c"] * (ctx.rank + 1),
                         n_atoms=[1] * (ctx.rank + 1), energy=[float(ctx.rank + 1)] * (ctx.rank + 1))
    merged, loss = ctx.reduce_eval(errors, 10.0 * (ctx.rank + 1))
    report["merged_energy"] = merged.energy
    report["loss"] = loss
    report["all_true"] = [ctx.all_true(True), ctx.all_true(ctx.rank == 0)]
    with open(f"{out}.collectives.{ctx.rank}", "w") as fh:
        fh.write(repr(report))


def _worker(rank: int, world: int, port: int, graphs: list[dict], out: str) -> None:
    torch.set_num_threads(1)
    from mlip.train.distributed import DistEnv, init_distributed, shutdown

    ctx = init_distributed(torch.device("cpu"), DistEnv(rank, world, 0, "127.0.0.1", port, "test"))
    try:
        losses, state, frames = _train_steps(ctx.hooks(), graphs)
        torch.save({"losses": losses, "state": state, "frames": frames}, f"{out}.{rank}")
        _check_collectives(ctx, out)
    finally:
        shutdown()


@pytest.mark.slow
def test_two_ranks_match_one_process_with_double_batch(tmp_path: Path):
    if not (ACAC / "train.xyz").is_file():
        pytest.skip("bundled data/acac missing")
    graphs = _graphs(slice_xyz(ACAC / "train.xyz", tmp_path / "train.xyz", 2 * B * STEPS_PER_EPOCH))
    from mlip.train.trainer import TrainerHooks

    # fork keeps the test fast (no re-import of torch/e3nn in the children); the children reset their
    # thread pools like DataLoader workers do. With other threads alive in this process (left by earlier
    # tests) forking could copy a held lock, so fall back to spawn then.
    method = "fork" if threading.active_count() == 1 else "spawn"
    out = str(tmp_path / "rank")
    mp.start_processes(_worker, args=(2, free_port(), graphs, out), nprocs=2, join=True, start_method=method)
    ref_losses, ref_state, ref_frames = _train_steps(TrainerHooks(), graphs)
    r0 = torch.load(f"{out}.0", weights_only=True)
    r1 = torch.load(f"{out}.1", weights_only=True)
    import ast

    for rank in (0, 1):
        rep = ast.literal_eval(Path(f"{out}.collectives.{rank}").read_text())
        assert rep["value"] == {"rank": 0}
        assert rep["error"] == "stats.xyz: frame 3: key 'energy': boom"
        assert rep["merged_energy"] == [1.0, 2.0, 2.0]  # rank 0's one frame, then rank 1's two
        assert rep["loss"] == pytest.approx((10.0 * 1 + 20.0 * 2) / 3)
        assert rep["all_true"] == [True, False]
    # the data order: each step's two rank batches together are the single-process batch
    assert len(ref_frames) == EPOCHS * STEPS_PER_EPOCH == len(r0["frames"]) == len(r1["frames"])
    for single, a, b in zip(ref_frames, r0["frames"], r1["frames"]):
        assert len(a) == len(b) == B
        assert a + b == single
    # the per-step loss trajectory and the final weights
    assert r0["losses"] == r1["losses"]
    np.testing.assert_allclose(r0["losses"], ref_losses, rtol=0, atol=1e-8)
    assert len(set(ref_losses)) == len(ref_losses)  # the model is actually changing
    for key, value in ref_state.items():
        torch.testing.assert_close(r0["state"][key], value, rtol=0, atol=1e-8)
        assert torch.equal(r0["state"][key], r1["state"][key])  # replicas stay identical
