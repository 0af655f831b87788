"""Helpers of the distributed tests: tiny configs on the bundled acac slice, free ports, torchrun."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ACAC = REPO / "data" / "acac"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]

sys.path.insert(0, str(REPO / "tests" / "train"))
from train_support import slice_xyz  # noqa: E402,F401  (one copy of the xyz slicer)

TINY_MODEL = {
    "hidden_irreps": "4x0e + 4x1o", "max_ell": 1, "correlation": 2, "num_interactions": 1,
    "r_max": 4.0, "num_bessel": 4, "radial_mlp": [8], "mlp_irreps": "4x0e",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def acac_files(tmp: Path, n_train: int = 16, n_valid: int = 6) -> dict[str, Path]:
    if not (ACAC / "train.xyz").is_file():
        pytest.skip("bundled data/acac missing")
    return {
        "train": slice_xyz(ACAC / "train.xyz", tmp / "train.xyz", n_train),
        "valid": slice_xyz(ACAC / "train.xyz", tmp / "valid.xyz", n_valid, start=n_train),
        "isolated": ACAC / "isolated_atoms.xyz",
    }


def tiny_config(files: dict[str, Path], out: Path, **sections) -> dict:
    cfg = {
        "data": {"train": str(files["train"]), "valid": str(files["valid"]), "e0s": "isolated",
                 "isolated_atoms": str(files["isolated"])},
        "model": dict(TINY_MODEL),
        "loss": {"type": "mse", "energy_weight": 1.0, "forces_weight": 100.0},
        "train": {"max_epochs": 2, "batch_size": 4, "lr": 0.01, "progress": False, "plot": False},
        "schedule": {"name": "none"},
        "ema": {"use": True, "decay": 0.9},
        "output_dir": str(out), "device": "cpu", "dtype": "float64", "seed": 5,
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    return cfg


def write_config(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MLIP_DIST_TIMEOUT_MIN="1")
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS"):
        e.pop(k, None)
    return e


def torchrun_cmd(nproc: int, config: Path, *extra: str) -> list[str]:
    return [*TORCHRUN, f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1", f"--master_port={free_port()}",
            "-m", "mlip.cli.train", "--config", str(config), *extra]


def run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``cmd``; a hang becomes a test failure after ``timeout`` seconds (not a stuck suite), and
    torchrun's workers are killed with it."""
    proc = subprocess.Popen(cmd, env=env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not finish within {timeout} s (hang?)\n{out[-3000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _descendants(pid: int) -> list[int]:
    """All descendant process ids of ``pid`` (Linux /proc; torchrun puts its workers in new sessions, so
    killing torchrun's process group does not reach them)."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parent[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        frontier += kids
    return found


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun and every worker (a crashed node), then wait until the workers are gone."""
    pids = _descendants(proc.pid)
    for pid in [proc.pid, *pids]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in pids):
        assert time.monotonic() < deadline, "workers survived SIGKILL"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"

