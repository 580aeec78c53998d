"""Keep glibc's malloc from handing big blocks back to the system (docs/performance.md, "The allocator").

PyTorch allocates CPU tensors with malloc. glibc serves a block above its mmap threshold (dynamic, at most
32 MiB on 64-bit) with a fresh mmap and returns it with munmap when the tensor dies, and trims the heap's free
top; the next tensor of that size then faults in every page again. A restoration network allocates feature maps
of tens of megabytes at every layer, so at 1024² and above much of a CPU forward is spent in page faults. With
no mmap for big blocks and no trimming, freed memory stays in the heap and the next tensor reuses it: this is
what glibc's MALLOC_MMAP_MAX_=0 and MALLOC_TRIM_THRESHOLD_ do when set before the process starts, done here
with mallopt(3) from inside the process.

The price is memory. A heap that never shrinks fragments: with big image buffers between the feature maps,
restoring a 12-megapixel photo in tiles peaked at 1.17–1.47 GiB instead of 1.13–1.19 GiB. So between independent
pieces of work (each tile, each image) `release_free_memory()` hands the heap's free pages back (malloc_trim): the
next tile faults its pages in once, not once per layer, and the peak stays at the default's (docs/performance.md).

The CLI calls `keep_freed_memory()` first; INTERIR_CPU_MALLOC=system leaves glibc as it is. A MALLOC_MMAP_MAX_ or
MALLOC_TRIM_THRESHOLD_ already in the environment is the user's choice and is left alone. Elsewhere than on Linux
with glibc this does nothing.
"""
from __future__ import annotations

import ctypes
import functools
import os
import sys

from interir.errors import InterIRError

ENV_VAR = "INTERIR_CPU_MALLOC"
_CHOICES = ("keep", "system")
_M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc's malloc.h)
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1  # mallopt takes an int: the largest trim threshold it can set (2 GiB)
_tuned = False  # whether keep_freed_memory() changed glibc's settings in this process


def choice() -> str:
    """INTERIR_CPU_MALLOC: "keep" (default) or "system"; anything else is a one-line InterIRError."""
    value = os.environ.get(ENV_VAR, "keep").strip().lower() or "keep"
    if value not in _CHOICES:
        raise InterIRError(f"{ENV_VAR}={os.environ[ENV_VAR]!r}: expected 'keep' (the default) or 'system'")
    return value


@functools.lru_cache(maxsize=1)
def _glibc():
    """The running glibc, or None (another C library, or not Linux); looked up once (release runs every tile)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed memory for reuse (module doc); True if anything was set.

    Validates INTERIR_CPU_MALLOC first (a bad value raises before any work)."""
    global _tuned
    if choice() == "system":
        return False
    libc = _glibc()
    if libc is None:
        return False
    changed = False
    if "MALLOC_MMAP_MAX_" not in os.environ:
        changed |= bool(libc.mallopt(_M_MMAP_MAX, 0))
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        changed |= bool(libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
    _tuned = _tuned or changed
    return changed


def release_free_memory() -> bool:
    """Between independent pieces of work: give the heap's free pages back to the system if this process kept
    them (`keep_freed_memory`); True if any were released. The tensors of the finished piece must be gone."""
    libc = _glibc() if _tuned else None
    return bool(libc.malloc_trim(0)) if libc is not None else False


__all__ = ["ENV_VAR", "choice", "keep_freed_memory", "release_free_memory"]
