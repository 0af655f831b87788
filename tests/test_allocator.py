"""mlip.allocator: large blocks from the heap (glibc), switched off by MLIP_MALLOC_TUNING=0."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

CODE = """
import resource, torch
from mlip.allocator import keep_large_blocks
state = keep_large_blocks()
x = torch.ones(2**22, dtype=torch.float64)  # 32 MiB, above glibc's largest dynamic mmap threshold


def call():  # a model call in miniature: three 32 MiB intermediates
    a = x * 2.0
    b = a * 3.0
    return float((a + b)[0])


call()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    call()
print(state, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 10)
"""


def _run(env_value: str) -> tuple[str, int]:
    env = dict(os.environ, MLIP_MALLOC_TUNING=env_value, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, check=True).stdout
    state, faults = out.split()
    return state, int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_large_blocks_are_reused_without_page_faults():
    state_on, faults_on = _run("1")
    state_off, faults_off = _run("0")
    assert (state_on, state_off) == ("True", "False")
    pages = 3 * 2**25 // 4096  # of the three intermediates
    assert faults_off > pages // 2  # a fresh mmap per intermediate: every page faults
    assert faults_on < faults_off // 2  # heap blocks are reused (measured: a fifth of the pages fault)


TRIM = """
import torch
from mlip.allocator import release_free_memory

def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

blocks = [torch.ones(8192, dtype=torch.float64) for _ in range(3000)]  # 64 KiB each: heap chunks, ~190 MiB
pin = torch.ones(16, dtype=torch.float64)  # allocated last: keeps the heap's top from shrinking
del blocks
before = rss_mib()
release_free_memory()
print(before - rss_mib())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim only")
def test_release_free_memory_returns_free_heap_pages():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", TRIM], capture_output=True, text=True, env=env, check=True).stdout
    assert float(out) > 100  # MiB of free heap chunks returned
