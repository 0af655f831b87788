"""mlip-train: configuration errors give one line on stderr, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from train_support import subprocess_env, tiny_config, write_config

from mlip.cli.train import main


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("error: ")
    return err


@pytest.mark.parametrize(
    "change, expected",
    [
        (["train.max_epoch=3"], "unknown config key 'train.max_epoch' (did you mean 'max_epochs'?)"),
        (["train.batch_size=abc"], "config key 'train.batch_size': expected an integer"),
        (["data.test=[nothere.xyz]"], "config key 'data.test[0]': file not found: nothere.xyz"),
        (["loss.type=mae"], "config key 'loss.type': 'mae' is not one of"),
        (["loss.stress_weight=1.0"], "stress"),  # no acac frame carries stress
    ],
)
def test_config_errors_one_line_exit_2(acac_small, tmp_path, capsys, change, expected):
    cfg = write_config(tiny_config(acac_small, tmp_path / "run"), tmp_path / "c.yaml")
    assert main(["--config", str(cfg), *change]) == 2
    assert expected in _one_line_error(capsys)


def test_missing_config_file(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "none.yaml")]) == 2
    assert "config file not found" in _one_line_error(capsys)


def test_invalid_yaml(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    assert main(["--config", str(bad)]) == 2
    assert "invalid YAML" in _one_line_error(capsys)


def test_existing_run_needs_resume(acac_small, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "epoch-00001.pt").write_bytes(b"x")
    cfg = write_config(tiny_config(acac_small, run), tmp_path / "c.yaml")
    assert main(["--config", str(cfg)]) == 2
    assert "--resume" in _one_line_error(capsys)


def test_unknown_key_through_the_real_process(acac_small, tmp_path):
    data = tiny_config(acac_small, tmp_path / "run")
    data["model"]["num_interaction"] = 2
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(data))
    res = subprocess.run([sys.executable, "-m", "mlip.cli.train", "--config", str(cfg)],
                         env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "error: unknown config key 'model.num_interaction' (did you mean 'num_interactions'?)"
    )
