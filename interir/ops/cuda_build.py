"""Where the `cuda` backend's compiled code comes from.

- `interir._C`: the CUDA extension built from csrc/ at install time (setup.py; needs nvcc and a CUDA torch).
- The host emulation (INTERIR_CUDA_EMULATE=1): the same csrc/ sources compiled by the host C++ compiler at first
  use (torch.utils.cpp_extension.load, cached under TORCH_EXTENSIONS_DIR). Its launchers run the CUDA kernels'
  per-thread code in loops on CPU tensors, so the test suite checks the kernels' arithmetic and indexing on
  machines without a GPU. It is a testing device, not a CPU backend: slow, and only in a source checkout.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

from interir import cpp_build
from interir.errors import BackendNotInstalled

EMULATE_ENV = "INTERIR_CUDA_EMULATE"
CSRC = Path(__file__).resolve().parents[2] / "csrc"
HOST_SOURCES = ("bindings.cpp", "host_ops.cpp")


def emulating() -> bool:
    """True when the `cuda` backend runs its kernels' host emulation on CPU tensors (INTERIR_CUDA_EMULATE=1)."""
    return os.environ.get(EMULATE_ENV) == "1"


def load_extension() -> ModuleType:
    """The compiled module (interir._C, or the host emulation when emulating); BackendNotInstalled says why not."""
    if emulating():
        return _load_host_emulation()
    try:
        module = importlib.import_module("interir._C")
    except ImportError as exc:
        if not isinstance(exc, ModuleNotFoundError) or exc.name != "interir._C":
            raise BackendNotInstalled(f"the CUDA extension interir._C failed to load ({exc})") from exc
        raise BackendNotInstalled(
            "the CUDA extension interir._C is not built (install with a CUDA toolkit and a CUDA build of torch: "
            "FORCE_CUDA=1 pip install --no-build-isolation -e .)"
        ) from exc
    return module


def _sources_digest() -> str:
    return cpp_build.digest(*(path.name.encode() + b"\0" + path.read_bytes() for path in sorted(CSRC.iterdir())
                              if path.is_file() and path.suffix in (".cpp", ".h", ".cuh", ".cu")))


def _load_host_emulation() -> ModuleType:
    sources = [CSRC / name for name in HOST_SOURCES]
    if not all(path.is_file() for path in sources):
        raise BackendNotInstalled(f"the host emulation ({EMULATE_ENV}=1) needs the csrc/ sources of a source "
                                  f"checkout; {CSRC} has none")
    try:
        # the name carries a digest of every csrc/ file: torch's build cache sees only the .cpp sources, not
        # the headers they include, and would otherwise keep running stale kernels after a header changes
        return cpp_build.build(f"interir_host_emulation_{_sources_digest()}", sources, cflags=["-O2"])
    except cpp_build.BuildFailed as exc:  # said once, as the backend's reason
        raise BackendNotInstalled(f"building the host emulation of the CUDA kernels failed: {exc}") from exc
