"""A run SIGKILLed in the middle and resumed in a fresh process ends with bitwise-identical weights."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import torch

from train_support import PYTHON, subprocess_env, tiny_config, write_config


def _train_cmd(config: Path, *extra: str) -> list[str]:
    return [PYTHON, "-m", "mlip.cli.train", "--config", str(config), *extra]


def _final_state(run: Path) -> dict[str, torch.Tensor]:
    ckpts = sorted((run / "checkpoints").glob("epoch-*.pt"))
    ckpt = torch.load(ckpts[-1], weights_only=True)
    return ckpt


def test_kill_and_resume_is_bitwise_identical(acac_small, tmp_path):
    env = subprocess_env()
    sections = {"train": {"max_epochs": 4}, "schedule": {"name": "cosine"}, "checkpoint": {"interval": 1, "keep": 2}}
    ref_cfg = write_config(tiny_config(acac_small, tmp_path / "ref", **sections), tmp_path / "ref.yaml")
    cut_cfg = write_config(tiny_config(acac_small, tmp_path / "cut", **sections), tmp_path / "cut.yaml")

    ref = subprocess.run(_train_cmd(ref_cfg), env=env, capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-2000:]

    # start the second run and SIGKILL it as soon as the checkpoint of epoch 2 exists (during epoch 3)
    proc = subprocess.Popen(_train_cmd(cut_cfg), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    target = tmp_path / "cut" / "checkpoints" / "epoch-00002.pt"
    deadline = time.monotonic() + 240
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "cut" / "checkpoints" / "epoch-00004.pt").exists()

    res = subprocess.run(_train_cmd(cut_cfg, "--resume"), env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resumed from" in res.stdout

    a, b = _final_state(tmp_path / "ref"), _final_state(tmp_path / "cut")
    assert a["epoch"] == b["epoch"] == 4
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for x, y in zip(a["ema"]["shadow_params"], b["ema"]["shadow_params"]):
        assert torch.equal(x, y)
    assert a["best_loss"] == b["best_loss"]
    # the final model files hold the same weights too
    from mlip.io.model_file import load_model

    ma, mb = load_model(tmp_path / "ref" / "model.pt"), load_model(tmp_path / "cut" / "model.pt")
    for (ka, va), (kb, vb) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    # metrics.jsonl has one record per epoch, no duplicates from the killed epoch
    epochs = [__import__("json").loads(l)["epoch"] for l in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]
