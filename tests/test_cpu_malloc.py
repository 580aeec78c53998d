"""glibc's malloc keeps freed memory for reuse in `interir` processes (interir/cpu_malloc.py, docs/performance.md)."""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

from interir import cpu_malloc

GLIBC = cpu_malloc._glibc() is not None and hasattr(ctypes.CDLL(None), "mallinfo2")
needs_glibc = pytest.mark.skipif(not GLIBC, reason="needs Linux with glibc ≥ 2.33 (mallinfo2)")

# In a fresh process: optionally tune, then hold a 64 MiB tensor and report the bytes glibc has in mmapped blocks
# (mallinfo2's hblkhd) before and while it is alive; then free it and release the heap's free pages.
_PROBE = r"""
import ctypes, json, sys
import torch
from interir import cpu_malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
changed = cpu_malloc.keep_freed_memory() if sys.argv[1] == "tune" else None
before = libc.mallinfo2().hblkhd
big = torch.ones(16 * 2**20)  # 64 MiB
during = libc.mallinfo2().hblkhd
del big
kept = libc.mallinfo2().fordblks
released = cpu_malloc.release_free_memory()
print(json.dumps({"changed": changed, "mmapped_growth": during - before, "released": released,
                  "kept_free": kept >= 64 * 2**20}))
"""


def _probe(mode: str, **env) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != cpu_malloc.ENV_VAR}
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], env={**clean, **env}, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_glibc
def test_big_tensors_come_from_the_heap_once_tuned():
    untuned = _probe("none")
    assert untuned["mmapped_growth"] >= 64 * 2**20  # glibc's default: a fresh mmap for the big block
    assert untuned["released"] is False  # nothing kept, nothing to release
    tuned = _probe("tune")
    assert tuned["changed"] is True
    assert tuned["mmapped_growth"] == 0
    assert tuned["kept_free"] and tuned["released"] is True  # freed into the heap, then handed back


@needs_glibc
def test_system_choice_and_users_own_malloc_settings_are_left_alone():
    system = _probe("tune", INTERIR_CPU_MALLOC="system")
    assert system["changed"] is False and system["mmapped_growth"] >= 64 * 2**20 and system["released"] is False
    both = _probe("tune", MALLOC_MMAP_MAX_="65536", MALLOC_TRIM_THRESHOLD_="131072")
    assert both["changed"] is False and both["mmapped_growth"] >= 64 * 2**20


def test_a_bad_choice_is_a_one_line_error_before_any_work(monkeypatch, capsys, tmp_path):
    from interir.cli import main

    monkeypatch.setenv(cpu_malloc.ENV_VAR, "jemalloc")
    assert main(["restore", str(tmp_path / "missing.png"), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("interir restore: error: INTERIR_CPU_MALLOC='jemalloc'") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_every_command_tunes_malloc_first(monkeypatch, tmp_path):
    from interir import cli

    calls = []
    monkeypatch.setattr(cpu_malloc, "keep_freed_memory", lambda: calls.append("tuned"))
    assert cli.main(["restore", str(tmp_path / "missing.png"), "-o", str(tmp_path / "out")]) == 1
    assert calls == ["tuned"]


def test_tiled_restoring_releases_memory_after_every_tile(monkeypatch):
    import torch

    from interir.tiling import restore_tiled

    calls = []
    monkeypatch.setattr(cpu_malloc, "release_free_memory", lambda: calls.append(1))
    out = restore_tiled(lambda t: t * 2, torch.rand(1, 3, 40, 52), tile=24, overlap=2)
    assert len(calls) == 6 and out.shape == (1, 3, 40, 52)  # 2 × 3 tiles
    restore_tiled(lambda t: t, torch.rand(1, 3, 8, 8), tile=24, overlap=2)
    assert len(calls) == 7  # one piece
