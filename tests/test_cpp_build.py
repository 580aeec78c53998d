"""interir/cpp_build.py: a build interrupted before torch removed its `lock` file does not hang the next one."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
import torch.utils.cpp_extension

from interir import cpp_build

pytestmark = pytest.mark.skipif(cpp_build.fcntl is None, reason="no flock on this system")


def test_a_stale_torch_lock_is_removed_before_the_build(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    stale = tmp_path / "demo_ext" / "lock"
    stale.parent.mkdir()
    stale.touch()  # what a build killed mid-way leaves: torch would wait on it forever
    seen = []

    def fake_load(name, **kwargs):
        seen.append(stale.exists())
        return "module"

    monkeypatch.setattr(torch.utils.cpp_extension, "load", fake_load)
    assert cpp_build.build("demo_ext", [], cflags=[]) == "module"
    assert seen == [False]


def test_a_live_build_is_waited_for_not_broken(tmp_path, monkeypatch):
    """While another process holds the builder's lock (it is building), build waits and leaves its torch lock."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    build_dir = tmp_path / "demo_ext"
    build_dir.mkdir()
    (build_dir / "lock").touch()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, pathlib, sys, time
        handle = open({str(build_dir / "interir.lock")!r}, "a")
        fcntl.flock(handle, fcntl.LOCK_EX)
        print("held", flush=True)
        time.sleep(1.5)
        pathlib.Path({str(build_dir / "lock")!r}).unlink()  # the live build finishes and removes its lock
        """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    start, seen = time.monotonic(), []
    monkeypatch.setattr(torch.utils.cpp_extension, "load", lambda name, **kw: seen.append(time.monotonic()) or "module")
    assert cpp_build.build("demo_ext", [], cflags=[]) == "module"
    holder.wait(timeout=10)
    assert len(seen) == 1 and seen[0] - start >= 1.4  # load ran only once the live builder had finished
