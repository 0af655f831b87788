"""Two single-thread runs side by side under equal load: a ballast takes over the core of whichever ends first.

The two cores of a small machine share caches and memory bandwidth, so a job runs faster once the job
on the other core has ended. Timing two trainings that start together is fair only if both see the
same load from start to end: when the first one finishes, :func:`race` starts a one-thread ballast
(:data:`BALLAST`, a loop of float64 matrix products and element-wise updates over a few MB, the
memory behaviour of a training step rather than an idle spin) and stops it when the second one ends.

    from equal_load import race
    results = race({"mace": (cmd_a, env, log_a), "mlip": (cmd_b, env, log_b)})
    results["mace"].wall_s, results["mace"].t0, results["mace"].t_end, results["mace"].peak_rss_MB

Each run's wall time counts from its own process start (both start within milliseconds).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BALLAST = (
    "import torch\n"
    "torch.set_num_threads(1)\n"
    "a = torch.randn(384, 384, dtype=torch.float64)\n"
    "b = torch.randn(384, 384, dtype=torch.float64)\n"
    "while True:\n"
    "    c = a @ b\n"
    "    a = torch.tanh(c * 1e-3) + b\n"
)
"""One thread of matrix products (384x384 float64: 3.5 MB of operands) and element-wise updates."""


@dataclass
class RunResult:
    """One process of a race: exit status, wall seconds from its start, start/end (epoch s), peak RSS (MB)."""

    returncode: int
    wall_s: float
    t0: float
    t_end: float
    peak_rss_MB: float


def start_ballast(env: dict[str, str]) -> subprocess.Popen:
    """Start the one-thread ballast process (stop it with ``.kill()``)."""
    benv = dict(env, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", BALLAST], env=benv, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def race(runs: dict[str, tuple[list[str], dict[str, str], Path]], ballast: bool = True) -> dict[str, RunResult]:
    """Start every ``name: (command, env, log file)`` at once; the first to end is replaced by a ballast.

    With ``ballast=False`` nothing replaces a finished run (the old side-by-side timing). Returns the
    :class:`RunResult` of each run by name.
    """
    results: dict[str, RunResult] = {}
    done = threading.Condition()
    procs: dict[str, subprocess.Popen] = {}
    starts: dict[str, float] = {}
    logs = {}
    for name, (cmd, env, log_path) in runs.items():
        logs[name] = open(log_path, "w")
        starts[name] = time.time()
        procs[name] = subprocess.Popen(cmd, env=env, stdout=logs[name], stderr=subprocess.STDOUT, cwd=REPO)

    def wait(name: str) -> None:
        _, status, usage = os.wait4(procs[name].pid, 0)
        t_end = time.time()
        with done:
            results[name] = RunResult(os.waitstatus_to_exitcode(status), t_end - starts[name], starts[name],
                                      t_end, usage.ru_maxrss / 1024.0)
            done.notify_all()

    threads = [threading.Thread(target=wait, args=(name,)) for name in procs]
    for t in threads:
        t.start()
    ballasts: list[subprocess.Popen] = []
    with done:
        while len(results) < len(procs):
            n = len(results)
            done.wait_for(lambda: len(results) > n)
            if ballast and len(results) < len(procs):
                ballasts += [start_ballast(next(iter(runs.values()))[1]) for _ in range(len(results) - n)]
    for b in ballasts:
        b.kill()
        b.wait()
    for t in threads:
        t.join()
    for fh in logs.values():
        fh.close()
    return results
