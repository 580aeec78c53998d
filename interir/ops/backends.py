"""Backend registry and choice for the accelerated operations.

A backend (`reference`, `triton`, `cuda`) registers one callable per operation name. The backend used for a
call is, in order of precedence: the call's `backend=` argument, the innermost `use_backend(...)` context,
the `INTERIR_BACKEND` environment variable, and finally `auto` (the best available backend for the
tensor's device; always `reference` on CPU). `auto` only ever falls back to a backend that is equally
correct; asking for a backend by name that cannot serve the input raises `BackendUnavailable`.
"""
from __future__ import annotations

import contextlib
import importlib
import os
from typing import Callable, Iterator

import torch

BACKENDS = ("reference", "triton", "cuda")
CHOICES = BACKENDS + ("auto",)
ENV_VAR = "INTERIR_BACKEND"

# Modules that register a backend's ops when imported; the reference ops are always loaded.
_LOADERS = {
    "reference": "interir.ops._reference_ops",
    "triton": "interir.kernels",
    "cuda": "interir.ops._cuda_ops",
}
# auto's preference order on a CUDA device
_AUTO_ORDER_CUDA = ("cuda", "triton", "reference")

# backend -> op name -> (callable, supports) ; supports(*args) -> None or a reason it cannot serve them
_REGISTRY: dict[str, dict[str, tuple[Callable, Callable | None]]] = {name: {} for name in BACKENDS}
_LOAD_ERRORS: dict[str, str] = {}
_override: str | None = None


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run this operation on these inputs; the message says why."""


class BackendNotInstalled(ImportError):
    """Raised while importing a backend's module when it is not installed; the message is the whole reason."""


def register(backend: str, op_name: str, fn: Callable, supports: Callable | None = None) -> None:
    """Make `fn` the `backend` implementation of `op_name`. `supports(*args, **kw)` may veto inputs."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    _REGISTRY[backend][op_name] = (fn, supports)


def _load(backend: str) -> str | None:
    """Import the backend's module once; return None when loaded, else why it is unavailable."""
    if backend in _LOAD_ERRORS:
        return _LOAD_ERRORS[backend] or None
    module = _LOADERS[backend]
    reason = ""
    try:
        importlib.import_module(module)
    except BackendNotInstalled as exc:
        reason = str(exc)
    except ModuleNotFoundError as exc:
        reason = (
            f"not part of this installation ({module} is missing)"
            if exc.name and module.startswith(exc.name)
            else f"a dependency is missing: {exc.name}"
        )
    except Exception as exc:  # a broken build must say why, not crash every op call
        reason = f"failed to load ({type(exc).__name__}: {exc})"
    _LOAD_ERRORS[backend] = reason
    return reason or None


def available_backends() -> dict[str, str | None]:
    """{backend: None if it loaded, else the reason it is unavailable}."""
    return {name: _load(name) for name in BACKENDS}


def validate_name(name: str) -> str:
    name = name.strip().lower()
    if name not in CHOICES:
        raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(CHOICES)}")
    return name


def current_backend() -> str:
    """The backend requested by the innermost `use_backend`, else $INTERIR_BACKEND, else 'auto'."""
    if _override is not None:
        return _override
    return validate_name(os.environ.get(ENV_VAR, "auto") or "auto")


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Run the enclosed ops on backend `name` (`reference`, `triton`, `cuda` or `auto`)."""
    global _override
    previous, _override = _override, validate_name(name)
    if _override != "auto":
        _load(_override)  # import the backend here, not inside a torch.compile trace
    try:
        yield _override
    finally:
        _override = previous


def _why_not(backend: str, op_name: str, args: tuple, kwargs: dict) -> str | None:
    reason = _load(backend)
    if reason:
        return reason
    entry = _REGISTRY[backend].get(op_name)
    if entry is None:
        return f"it has no implementation of {op_name}"
    supports = entry[1]
    return supports(*args, **kwargs) if supports is not None else None


def dispatch(op_name: str, device: torch.device, backend: str | None, *args, **kwargs):
    """Call `op_name` on the chosen backend with `args`; `device` is where the inputs live."""
    name = validate_name(backend) if backend is not None else current_backend()
    if name != "auto":
        reason = _why_not(name, op_name, args, kwargs)
        if reason:
            raise BackendUnavailable(f"backend '{name}' cannot run {op_name}: {reason}")
        return _REGISTRY[name][op_name][0](*args, **kwargs)
    order = _AUTO_ORDER_CUDA if device.type == "cuda" else ("reference",)
    for candidate in order:
        if _why_not(candidate, op_name, args, kwargs) is None:
            return _REGISTRY[candidate][op_name][0](*args, **kwargs)
    raise BackendUnavailable(f"no backend can run {op_name} on {device.type} inputs")


def preload_requested() -> None:
    """Import the backend $INTERIR_BACKEND names, at import time rather than inside a torch.compile trace."""
    name = os.environ.get(ENV_VAR, "auto").strip().lower()
    if name in BACKENDS:
        _load(name)
