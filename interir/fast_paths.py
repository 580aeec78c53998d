"""The switch for the CPU fast paths of docs/performance.md: on by default, off to time or check the old path.

The fast paths compute what the plain path computes, with less work (equal to float round-off;
tests/test_fast_paths.py):
- the EPBlock's residual updates x + y·β as one fused `addcmul`;
- the explainable attention without its straight-through surrogate (a sigmoid and three passes) when nothing
  needs its gradient, which includes every call of the custom op: its backward is the op's own formula;
- an op call that wants no gradient, with nothing tracing or watching it, runs its backend's function directly
  instead of through its torch.library op (interir/ops/backends.py).

    with interir.fast_paths.disabled(): ...      # or INTERIR_FAST_PATHS=0 in the environment
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from interir.errors import InterIRError

ENV_VAR = "INTERIR_FAST_PATHS"
_VALUES = {"": True, "1": True, "true": True, "on": True, "yes": True,
           "0": False, "false": False, "off": False, "no": False}
_enabled: bool | None = None  # None: $INTERIR_FAST_PATHS not read yet


def enabled() -> bool:
    """Whether the fast paths are on (default yes; INTERIR_FAST_PATHS=0 or `disabled()` turns them off).
    An INTERIR_FAST_PATHS other than 1/0, true/false, on/off or yes/no is a one-line InterIRError."""
    global _enabled
    if _enabled is None:
        value = os.environ.get(ENV_VAR, "1").strip().lower()
        if value not in _VALUES:
            raise InterIRError(f"{ENV_VAR}={os.environ[ENV_VAR]!r}: expected 1 or 0 (true/false, on/off, yes/no)")
        _enabled = _VALUES[value]
    return _enabled


@contextlib.contextmanager
def disabled(flag: bool = True) -> Iterator[None]:
    """Within the block the fast paths are off (with flag False: on); the previous state is restored after."""
    global _enabled
    before = enabled()
    _enabled = not flag
    try:
        yield
    finally:
        _enabled = before


def unobserved() -> bool:
    """Whether nothing traces or watches the ops about to run: no torch.compile, torch.export or jit tracing, and no
    dispatch mode (FlopCounterMode, FakeTensorMode & co.). A fast path that skips ops, or their torch.library
    wrappers, may run only then."""
    # tracing first: Dynamo would otherwise trace into the checks below for an answer that is no anyway
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.compiler.is_exporting():
        return False
    return _get_current_dispatch_mode() is None


__all__ = ["ENV_VAR", "enabled", "disabled", "unobserved"]
