"""What both sides of scripts/benchmark_inference.py share: model hyper-parameters and timing.

Imported by :mod:`benchmark_inference` (mlip's side) and :mod:`benchmark_inference_mace` (the mace-torch
worker, which runs in mace-torch's venv and never imports mlip), and by :mod:`benchmark_calculator`;
:func:`default_mace_python` is every benchmark script's default ``--mace-python``. It imports neither of
them, nor mlip: the standard library at import time, torch inside :func:`time_calls`.
"""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Any

ELEMENTS = [1, 6, 8, 14]
MODELS = {"small": "32x0e + 32x1o", "medium": "128x0e + 128x1o", "mp64": "64x0e + 64x1o"}
MODEL_EXTRAS: dict[str, dict[str, Any]] = {
    # MACE-MP-like options (issue 12's setting): density-normalised interactions, ZBL, Agnesi transform
    "mp64": {"interaction_cls": "RealAgnosticDensityResidualInteractionBlock",
             "interaction_cls_first": "RealAgnosticDensityInteractionBlock",
             "pair_repulsion": True, "distance_transform": "Agnesi"},
}


FALLBACK_MACE_PYTHON = "/tmp/macevenv/bin/python"


def default_mace_python() -> str:
    """The mace-torch venv's python: the repository's ``.venv-mace`` (``make mace-venv``), else
    /tmp/macevenv when that exists, else the repository's path (a missing file: callers say so or skip)."""
    local = Path(__file__).resolve().parents[1] / ".venv-mace" / "bin" / "python"
    if not local.exists() and Path(FALLBACK_MACE_PYTHON).exists():
        return FALLBACK_MACE_PYTHON
    return str(local)


# ------------------------------------------------------------------------------------------
# model hyper-parameters (shared by both venvs)
# ------------------------------------------------------------------------------------------
def mace_hyperparameters(hidden_irreps: str, extras: dict[str, Any] | None = None) -> dict[str, Any]:
    """mace-torch constructor arguments (the format of the converter's hyperparameters.json)."""
    return {**_BASE_HYPERPARAMETERS, "hidden_irreps": hidden_irreps, **(extras or {})}


_BASE_HYPERPARAMETERS: dict[str, Any] = {
    "model_class": "ScaleShiftMACE",
    "atomic_numbers": ELEMENTS,
    "atomic_energies": [-13.6, -1029.0, -2041.0, -7870.0],
    "gate": "silu",
    "r_max": 5.0,
    "num_bessel": 8,
    "num_polynomial_cutoff": 5,
    "max_ell": 3,
    "interaction_cls": "RealAgnosticResidualInteractionBlock",
    "interaction_cls_first": "RealAgnosticResidualInteractionBlock",
    "num_interactions": 2,
    "MLP_irreps": "16x0e",
    "avg_num_neighbors": 20.0,
    "correlation": 3,
    "radial_MLP": [64, 64, 64],
    "atomic_inter_scale": 1.0,
    "atomic_inter_shift": 0.0,
    "heads": ["Default"],
}


def skipped(skip: list[str], system: str, model: str, dtype: str) -> bool:
    """Whether ``--skip`` names this row (``system:model`` or ``system:model:dtype``)."""
    return f"{system}:{model}" in skip or f"{system}:{model}:{dtype}" in skip


# ------------------------------------------------------------------------------------------
# measurement helpers
# ------------------------------------------------------------------------------------------
class PeakRSS:
    """Sample the resident set size (``/proc/self/statm``) in a thread; peak growth in MiB."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = 0
        self._stop = threading.Event()

    def _rss(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRSS":
        self.base = self._rss()
        self.peak = self.base
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.mib = (self.peak - self.base) / 2**20


def time_calls(call, repeats: int, warmup: int, device: str) -> dict[str, float]:
    """Median ms per ``call()``, warm-up duration (s) and peak memory (MiB)."""
    import torch

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    start = time.perf_counter()
    for _ in range(warmup):
        call()
    sync()
    warm = time.perf_counter() - start
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    with PeakRSS() as rss:
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            sync()
            times.append(time.perf_counter() - t0)
    memory = (torch.cuda.max_memory_allocated() - base) / 2**20 if device.startswith("cuda") else rss.mib
    return {"ms": 1e3 * statistics.median(times), "warmup_s": warm, "peak_mib": memory}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``, else ``"?"``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"
