"""The C allocator's handling of large blocks, for CPU inference (glibc only).

glibc's ``malloc`` serves blocks above its mmap threshold (dynamic, at most 32 MiB) with a fresh ``mmap``
and returns them with ``munmap`` when freed. Every page of such a block then faults on its first touch,
at every call: a compiled energy+forces call of a 64-channel model on 512 Si atoms allocates about 2 GB
that way and spends about half its time in page faults (docs/benchmarks.md, "Inference per core").
:func:`keep_large_blocks` raises the threshold so that large blocks come from the heap, and the trim
threshold so that freed heap memory is kept for the next call: the resident memory then stays at its
high-water mark instead of being returned to the system between calls, which is what an MD run wants.

It changes the whole process's allocator (once; later calls do nothing). ``MLIP_MALLOC_TUNING=0`` in the
environment leaves the allocator alone. Where the C library is not glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["keep_large_blocks", "release_free_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_LARGE = 1 << 30  # bytes: blocks up to 1 GiB come from the heap
_state: dict[str, bool] = {}
_libc: dict[str, ctypes.CDLL | None] = {}


def keep_large_blocks() -> bool:
    """Serve blocks up to 1 GiB from the heap and keep freed memory (glibc ``mallopt``). True if in effect."""
    if "done" in _state:
        return _state["done"]
    _state["done"] = False
    libc = _glibc()
    if os.environ.get("MLIP_MALLOC_TUNING", "1") == "0" or libc is None:
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, _LARGE) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2 * _LARGE - 1) == 1
    _state["done"] = bool(ok)
    return _state["done"]


def release_free_memory() -> None:
    """Return the free pages of the C heap to the system (glibc ``malloc_trim(0)``; elsewhere nothing).

    Large eager calls (:mod:`mlip.nn.blocking`) call it between blocks: freed blocks of slightly different
    sizes fragment glibc's heap, whose free chunks stay resident (up to 6x the live tensors measured).
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    if "libc" not in _libc:
        _libc["libc"] = None
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                libc.gnu_get_libc_version.restype = ctypes.c_char_p  # glibc only (musl has no such symbol)
                if libc.gnu_get_libc_version():
                    _libc["libc"] = libc
            except (OSError, AttributeError):
                pass
    return _libc["libc"]
