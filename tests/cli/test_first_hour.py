"""A new user's first hour (issue 16): the shipped configs run from a clone (no ../shared), through the CLI.

The clone is simulated by copying ``configs/`` and ``data/`` into a temporary folder whose parent has
no ``shared/``; every command runs with that folder as working directory.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from train_support import subprocess_env

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))
TINY = ["model.hidden_irreps=4x0e+4x1o", "model.max_ell=1", "model.correlation=1", "model.num_interactions=1",
        "model.radial_mlp=[8]", "model.num_bessel=4", "model.mlp_irreps=4x0e", "train.max_epochs=1",
        "train.progress=false", "train.plot=false", "train.batch_size=10"]


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """configs/ and data/ of the repository in ``tmp_path/clone`` (``tmp_path/shared`` does not exist)."""
    root = tmp_path / "clone"
    root.mkdir()
    shutil.copytree(REPO / "configs", root / "configs")
    shutil.copytree(REPO / "data", root / "data")
    assert not (root.parent / "shared").exists()
    return root


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_config_runs_one_epoch_from_a_clone(clone, monkeypatch, capsys, name):
    from mlip.cli.train import main

    monkeypatch.chdir(clone)
    assert "../shared" not in "".join(
        line.split("#")[0] for line in (clone / "configs" / f"{name}.yaml").read_text().splitlines())
    if name == "finetune_replay":  # its header: first train the pretrained model on the GFN2 slice
        pre = ["data.heads={xtb: {train: data/acac_gfn2/train.xyz, e0s: isolated, "
               "isolated_atoms: data/acac_gfn2/isolated_atoms.xyz}}", "output_dir=runs/xtb"]
        assert main(["--config", "configs/tea_merge.yaml", *pre, *TINY]) == 0
        assert main(["--config", f"configs/{name}.yaml", "output_dir=run", *TINY[7:]]) == 0
    else:
        assert main(["--config", f"configs/{name}.yaml", "output_dir=run", *TINY]) == 0
    assert (clone / "run" / "model.pt").is_file()
    assert "error" not in capsys.readouterr().err


def _run(clone: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mlip.cli.train", *args]
    return subprocess.run(cmd, cwd=clone, env=subprocess_env(), capture_output=True, text=True, timeout=900)


def test_acceptance_cli_from_a_clean_clone(clone):
    """The four commands of issue 16's acceptance list, each a real ``mlip-train`` process."""
    import ase.io

    from mlip.io.model_file import load_model

    # 1. the README's first command, as written
    r = _run(clone, "--config", "configs/si.yaml", "train.max_epochs=1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (clone / "runs" / "si" / "model.pt").is_file()
    # not a terminal: plain progress lines with an ETA (3 batches of 4 frames -> 33 % and 67 %), no \r
    assert "epoch 1/1: 33% (1/3 batches), " in r.stdout and "epoch 1/1: 67% (2/3 batches), " in r.stdout
    assert "epoch 1/1 took " in r.stdout and "; run finished" in r.stdout
    assert "\r" not in r.stdout + r.stderr
    # 2. the same in float32 (fresh output_dir: runs/si holds checkpoints now)
    r = _run(clone, "--config", "configs/si.yaml", "train.max_epochs=1", "dtype=float32", "output_dir=runs/si32")
    assert r.returncode == 0, r.stderr[-2000:]
    m32 = load_model(clone / "runs" / "si32" / "model.pt")
    assert {str(p.dtype) for p in m32.parameters()} == {"torch.float32"}
    # 3. data.e0s=<isolated-atoms .xyz>: the model's E0s are the energies written in that file
    iso = "data/acac/isolated_atoms.xyz"
    r = _run(clone, "--config", "configs/acac.yaml", f"data.e0s={iso}", "data.isolated_atoms=null",
             "output_dir=runs/acac_iso", *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    m = load_model(clone / "runs" / "acac_iso" / "model.pt")
    want = {int(a.numbers[0]): a.get_potential_energy() for a in ase.io.read(clone / iso, ":")}
    got = dict(zip(m.atomic_numbers, m.atomic_energies[0].tolist()))
    assert got == pytest.approx(want, abs=1e-9)
    # 4. e0s: average = least squares of the training energies; one element: sum(n E) / sum(n^2)
    r = _run(clone, "--config", "configs/si.yaml", "data.e0s=average", "data.valid=data/si/test.xyz",
             "output_dir=runs/si_avg", *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    frames = ase.io.read(clone / "data" / "si" / "train.xyz", ":")
    n = np.array([len(a) for a in frames], float)
    e = np.array([a.get_potential_energy() for a in frames])
    m = load_model(clone / "runs" / "si_avg" / "model.pt")
    assert m.atomic_energies[0, 0].item() == pytest.approx(float(n @ e / (n @ n)), rel=1e-10)
    assert "warning: data.e0s" not in r.stdout  # one element: the fit is determined, no E0 warning
