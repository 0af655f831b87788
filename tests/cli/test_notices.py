"""One-line warnings of mlip-train (1-frame validation set, stage two after the last epoch, --resume without
a checkpoint) and the Ctrl-C hint (exit 130, no traceback)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlip.cli.train import main

REPO = Path(__file__).resolve().parents[2]
TINY = ["model.hidden_irreps=4x0e+4x1o", "model.max_ell=1", "model.correlation=1", "model.num_interactions=1",
        "model.radial_mlp=[8]", "model.num_bessel=4", "model.mlp_irreps=4x0e", "train.progress=false",
        "train.plot=false", "train.batch_size=12"]


@pytest.fixture
def si_clone(tmp_path, monkeypatch) -> Path:
    if not (REPO / "data" / "si" / "train.xyz").is_file():
        pytest.skip("bundled data/si missing")
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    shutil.copytree(REPO / "data" / "si", tmp_path / "data" / "si")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_warnings_are_one_line_each(si_clone, capsys):
    # 12 bundled frames x 0.1 -> 1 validation frame; stage_two.start_epoch 150 > 1 epoch; no checkpoint yet
    argv = ["--config", "configs/si.yaml", "data.valid_fraction=0.1", "train.max_epochs=1", "output_dir=run",
            *TINY, "--resume"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    warnings = [line for line in out if line.startswith("warning: ")]
    assert len(warnings) == 3, warnings
    assert warnings[0].startswith("warning: config key 'stage_two.start_epoch': 150 is after train.max_epochs (1)")
    assert any(w.startswith("warning: head 'Default': the validation set has 1 frame (valid_fraction 0.1 of 12")
               for w in warnings)
    assert any(w.startswith("warning: --resume: no checkpoint in run/checkpoints; starting from scratch")
               for w in warnings)
    # the default si recipe on the bundled slice holds out 2 frames: no split warning
    assert main(["--config", "configs/si.yaml", "train.max_epochs=1", "output_dir=run2", *TINY]) == 0
    assert [w for w in capsys.readouterr().out.splitlines() if "validation set has" in w] == []


def test_ctrl_c_prints_a_resume_hint(si_clone, capsys, monkeypatch):
    import mlip.train.run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mlip.train.run, "train", interrupted)
    argv = ["--config", "configs/si.yaml", "output_dir=run", "train.max_epochs=3"]
    assert main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err == ("interrupted before the first checkpoint was written (every checkpoint.interval epochs), so this "
                   "starts from scratch: mlip-train --config configs/si.yaml output_dir=run train.max_epochs=3 --resume")
    (si_clone / "run" / "checkpoints").mkdir(parents=True)
    (si_clone / "run" / "checkpoints" / "epoch-00001.pt").write_bytes(b"")
    assert main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert err == ("interrupted; continue from the newest checkpoint in run/checkpoints with: mlip-train --config "
                   "configs/si.yaml output_dir=run train.max_epochs=3 --resume")


def test_real_sigint_gives_the_hint_without_traceback(si_clone):
    """A real Ctrl-C (SIGINT) in the middle of an epoch: exit 130, one stderr line with the --resume command."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from train_support import subprocess_env

    env = {**subprocess_env(), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "mlip.cli.train", "--config", "configs/si.yaml", "output_dir=run",
           "train.max_epochs=1000", "train.batch_size=1", "checkpoint.interval=1", *TINY[:7]]
    # A shell that starts a job with '&' (nohup, a CI runner) leaves SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: give the child the default disposition, as a terminal would.
    proc = subprocess.Popen(cmd, cwd=si_clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 300
        for line in proc.stdout:  # wait until the second epoch runs (a checkpoint exists)
            if line.startswith("epoch 2/1000: ") or time.monotonic() > deadline:
                break
        os.kill(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:  # say where it is: run_cli dumps every stack on SIGUSR1
            os.kill(proc.pid, signal.SIGUSR1)
            time.sleep(5)
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"still running 120 s after SIGINT; stdout tail: {out[-600:]!r}; stacks: {err[-4000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err[-2000:]
    assert lines[0].startswith("interrupted; continue from the newest checkpoint in run/checkpoints with: "
                               "mlip-train --config configs/si.yaml output_dir=run train.max_epochs=1000")
    assert lines[0].endswith(" --resume")


def test_sigusr1_prints_the_stacks_and_goes_on():
    """``kill -USR1`` on a running command prints the Python stacks to stderr; the command carries on."""
    import signal
    import subprocess
    import sys

    if not hasattr(signal, "SIGUSR1"):
        pytest.skip("no SIGUSR1 on this platform")
    code = ("import os, signal\nfrom mlip.cli.common import run_cli\n"
            "def main(argv):\n    os.kill(os.getpid(), signal.SIGUSR1)\n    print('after')\n    return 0\n"
            "raise SystemExit(run_cli(main))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "after"
    assert "in main" in proc.stderr and "File " in proc.stderr, proc.stderr
