"""End to end with torchrun (gloo, 2 CPU ranks): early stopping + stage two terminate cleanly and match one
process with the double batch; a 2-rank run killed with SIGKILL resumes on 1 rank."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dist_support import REPO, acac_files, env, kill_tree, run, tiny_config, torchrun_cmd, write_config


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from mlip.io.model_file import load_model

    return {k: v.detach().clone() for k, v in load_model(path).state_dict().items()}


def _train_here(cfg: dict, resume: bool = False) -> None:
    from mlip.config import config_from_dict
    from mlip.train.run import train

    train(config_from_dict(cfg), resume=resume, log=lambda s: None)


@pytest.mark.slow
def test_early_stopping_two_ranks_no_hang_and_same_trajectory(tmp_path: Path):
    files = acac_files(tmp_path)
    # lr 1.0 makes the validation loss rise after a few epochs (checked once: stops at epoch 4 of 8);
    # stage two switches loss weights at epoch 3, restarting the best-model bookkeeping
    train = {"max_epochs": 8, "batch_size": 4, "lr": 1.0, "patience": 1, "progress": False, "plot": False}
    stage = {"start_epoch": 3, "forces_weight": 50.0}
    two = tiny_config(files, tmp_path / "two", train=train, stage_two=stage)
    proc = run(torchrun_cmd(2, write_config(two, tmp_path / "two.yaml")), timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "early stopping at epoch" in proc.stdout
    assert proc.stdout.count("early stopping at epoch") == 1  # only rank 0 prints
    one = tiny_config(files, tmp_path / "one", train={**train, "batch_size": 8}, stage_two=stage)
    _train_here(one)
    m2, m1 = _metrics(tmp_path / "two"), _metrics(tmp_path / "one")
    assert len(m2) == len(m1) < train["max_epochs"]
    for a, b in zip(m2, m1):
        assert a["epoch"] == b["epoch"]
        np.testing.assert_allclose([a["train_loss"], a["valid_loss"]], [b["train_loss"], b["valid_loss"]],
                                   rtol=1e-8, atol=1e-8)
        assert a["valid"]["Default"]["all"]["n_configs"] == 6  # sharded validation gathered in full
    for path in ("model.pt", "final_metrics.json", "checkpoints"):
        assert (tmp_path / "two" / path).exists()
    w2, w1 = _weights(tmp_path / "two" / "model.pt"), _weights(tmp_path / "one" / "model.pt")
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=1e-8, atol=1e-8)


@pytest.mark.slow
def test_kill_two_ranks_resume_on_one(tmp_path: Path):
    files = acac_files(tmp_path)
    train = {"max_epochs": 6, "batch_size": 4, "lr": 0.01, "progress": False, "plot": False}
    killed = tiny_config(files, tmp_path / "killed", train=train)
    cmd = torchrun_cmd(2, write_config(killed, tmp_path / "killed.yaml"))
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen(cmd, env=env(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ckpt = tmp_path / "killed" / "checkpoints" / "epoch-00002.pt"
    deadline = time.monotonic() + 120
    try:
        while not ckpt.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("torchrun ended or took > 120 s before the second checkpoint:\n"
                            + (tmp_path / "killed.log").read_text()[-3000:])
            time.sleep(0.05)
    finally:
        kill_tree(proc)
        log.close()
    assert not (tmp_path / "killed" / "final_metrics.json").exists()  # really killed mid-run
    # resume on a different number of ranks: one process with the same global batch
    resumed = {**killed, "train": {**train, "batch_size": 8}}
    _train_here(resumed, resume=True)
    reference = tiny_config(files, tmp_path / "reference", train={**train, "batch_size": 8})
    _train_here(reference)
    assert [m["epoch"] for m in _metrics(tmp_path / "killed")] == list(range(1, 7))
    np.testing.assert_allclose([m["train_loss"] for m in _metrics(tmp_path / "killed")],
                               [m["train_loss"] for m in _metrics(tmp_path / "reference")], rtol=1e-9)
    w, ref = _weights(tmp_path / "killed" / "model.pt"), _weights(tmp_path / "reference" / "model.pt")
    for key in ref:
        torch.testing.assert_close(w[key], ref[key], rtol=1e-8, atol=1e-10)
