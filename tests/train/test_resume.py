"""A run SIGKILLed in the middle and resumed in a fresh run ends with bitwise-identical weights."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from train_support import PYTHON, subprocess_env, tiny_config, write_config

from mlip.cli.train import main as train_main


def _last_checkpoint(run: Path) -> dict:
    ckpts = sorted((run / "checkpoints").glob("epoch-*.pt"))
    return torch.load(ckpts[-1], weights_only=True)


@pytest.mark.parametrize("stage_two", [None, -2, -3], ids=["one_stage", "stage_two_from_2", "stage_two_from_1"])
def test_kill_and_resume_is_bitwise_identical(acac_small, tmp_path, stage_two):
    """Killed after epoch 1; stage two from the resumed epoch 2 or from epoch 1 (the default recipe's
    kind: energy weight 1000, lr 0.002)."""
    sections = {"train": {"max_epochs": 3}, "schedule": {"name": "cosine"}, "checkpoint": {"interval": 1, "keep": 2},
                "stage_two": {"start_epoch": stage_two, "lr": 0.002, "energy_weight": 1000.0}}
    ref_cfg = write_config(tiny_config(acac_small, tmp_path / "ref", **sections), tmp_path / "ref.yaml")
    cut_cfg = write_config(tiny_config(acac_small, tmp_path / "cut", **sections), tmp_path / "cut.yaml")

    assert train_main(["--config", str(ref_cfg)]) == 0

    # the interrupted run: a separate process (same thread count), SIGKILLed once epoch 1 is checkpointed
    env = subprocess_env(threads=torch.get_num_threads())
    proc = subprocess.Popen(
        [PYTHON, "-m", "mlip.cli.train", "--config", str(cut_cfg)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    target = tmp_path / "cut" / "checkpoints" / "epoch-00001.pt"
    deadline = time.monotonic() + 240
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "cut" / "checkpoints" / "epoch-00003.pt").exists()

    assert train_main(["--config", str(cut_cfg), "--resume"]) == 0

    a, b = _last_checkpoint(tmp_path / "ref"), _last_checkpoint(tmp_path / "cut")
    assert a["epoch"] == b["epoch"] == 3
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for x, y in zip(a["ema"]["shadow_params"], b["ema"]["shadow_params"]):
        assert torch.equal(x, y)
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    assert a["best_loss"] == b["best_loss"]
    from mlip.io.model_file import load_model

    ma, mb = load_model(tmp_path / "ref" / "model.pt"), load_model(tmp_path / "cut" / "model.pt")
    for (ka, va), (kb, vb) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    # one metrics record per epoch: nothing duplicated from the killed epoch
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
