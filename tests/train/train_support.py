"""Helpers of the training and train/eval CLI tests: slices of the bundled data, a tiny model config."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ACAC = REPO / "data" / "acac"
SI = REPO / "data" / "si"

TINY_MODEL = {
    "hidden_irreps": "4x0e + 4x1o",
    "max_ell": 1,
    "correlation": 2,
    "num_interactions": 2,
    "r_max": 4.0,
    "num_bessel": 4,
    "radial_mlp": [8],
    "mlp_irreps": "4x0e",
}


def slice_xyz(src: Path, dst: Path, n: int, start: int = 0) -> Path:
    """Copy frames ``start .. start+n-1`` of an extended XYZ file (plain text slicing)."""
    lines = src.read_text().splitlines(keepends=True)
    out, i, frame = [], 0, 0
    while i < len(lines) and frame < start + n:
        count = int(lines[i].split()[0])
        if frame >= start:
            out.extend(lines[i : i + count + 2])
        i += count + 2
        frame += 1
    dst.write_text("".join(out))
    return dst


def tiny_config(files: dict[str, Path], out: Path, **sections) -> dict:
    cfg = {
        "data": {
            "train": str(files["train"]),
            "valid_fraction": 0.25,
            "test": str(files["test"]),
            "e0s": "isolated",
            "isolated_atoms": str(files["isolated"]),
        },
        # the defaults before issue 25, which these tests were written against: mean shift, a residual first
        # layer, no stage two, no weight decay, clip 100 (tests/train/test_defaults.py covers the new ones)
        "model": {**TINY_MODEL, "shifting": "mean", "interaction_first": "residual"},
        "loss": {"type": "mse", "energy_weight": 1.0, "forces_weight": 100.0},
        "optimiser": {"weight_decay": 0.0},
        "stage_two": {"start_epoch": None},
        "train": {"max_epochs": 3, "batch_size": 4, "lr": 0.01, "clip_grad": 100.0, "progress": False, "plot": False},
        "ema": {"use": True, "decay": 0.9},
        "output_dir": str(out),
        "device": "cpu",
        "dtype": "float64",
        "seed": 3,
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


def subprocess_env(threads: int = 1) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


PYTHON = sys.executable


def make_acac_small(tmp_path: Path) -> dict[str, Path]:
    """20 training and 8 test frames of the bundled acac slice, plus isolated atoms."""
    if not (ACAC / "train.xyz").is_file():
        pytest.skip("bundled data/acac missing")
    return {
        "train": slice_xyz(ACAC / "train.xyz", tmp_path / "train.xyz", 20),
        "test": slice_xyz(ACAC / "test.xyz", tmp_path / "test.xyz", 8),
        "isolated": ACAC / "isolated_atoms.xyz",
    }
