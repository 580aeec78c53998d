"""C++ built at first use: torch.utils.cpp_extension.load, cached under TORCH_EXTENSIONS_DIR, with one-line failures.

Two parts of interir compile C++ on the user's machine: the fused CPU kernels (interir/cpu_kernels.py) and the CUDA
kernels' host emulation (interir/ops/cuda_build.py). Each names its build after a digest of what went into it, since
torch's cache sees only the listed sources (not the headers they include, nor the compiler flags' target).
INTERIR_BUILD_VERBOSE=1 shows the compiler's output.

torch marks a build in progress with a `lock` file in its build directory and waits, without end, while one exists.
A build interrupted before it could remove that file (Ctrl-C, a killed job) would make every later run hang. So
`build` holds an OS file lock (`flock`, which the system releases when its process dies) on `interir.lock` beside it
while it builds: whoever holds that lock is the only live builder of interir's, so a torch `lock` found then is
stale and is removed.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from types import ModuleType
from typing import Iterator

try:
    import fcntl
except ImportError:  # Windows: no flock; a stale torch lock there must be removed by hand
    fcntl = None


class BuildFailed(RuntimeError):
    """The build could not be made; the message is the first line of the reason (a missing compiler or ninja)."""


def digest(*parts: bytes) -> str:
    """A 12-hex-digit name suffix for a build made of `parts`."""
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:12]


def verbose() -> bool:
    return os.environ.get("INTERIR_BUILD_VERBOSE") == "1"


def is_built(name: str) -> bool:
    """Whether torch's extension cache already holds a build of `name` (so loading it compiles nothing)."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        return any(Path(_get_build_directory(name, verbose=False)).glob(f"{name}*.so"))
    except Exception:
        return False


def build(name: str, sources: list[Path], *, cflags: list[str], ldflags: list[str] | None = None) -> ModuleType:
    """The module `name` compiled from `sources` (or loaded from torch's cache); BuildFailed says why not."""
    try:
        from torch.utils.cpp_extension import _get_build_directory, load

        build_dir = Path(_get_build_directory(name, verbose=False))
        build_dir.mkdir(parents=True, exist_ok=True)
        with _sole_builder(build_dir):
            return load(name=name, sources=[str(p) for p in sources], extra_cflags=cflags,
                        extra_ldflags=ldflags or [], verbose=verbose())
    except Exception as exc:  # a compiler or ninja problem
        text = str(exc).strip()
        raise BuildFailed(text.splitlines()[0] if text else type(exc).__name__) from exc


@contextlib.contextmanager
def _sole_builder(build_dir: Path) -> Iterator[None]:
    """Within the block this process is the only interir build of `build_dir` (others wait here), and torch's
    `lock` file, if a dead build left one, is gone."""
    if fcntl is None:
        yield
        return
    with open(build_dir / "interir.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released by the system if this process dies
        try:
            (build_dir / "lock").unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


__all__ = ["BuildFailed", "digest", "verbose", "is_built", "build"]
