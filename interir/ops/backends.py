"""The backend registry: which implementations of the ops exist, which one serves a call.

An op's *contract* (interir/ops/<op>.py) declares itself here with `declare_op(name, define)`; `define` turns
one backend's plain functions into the op's torch.library custom ops (schema, fake, autograd, flop formula).
A *backend* is a passive table, `{op name: {"forward": f, "backward": g, "why_not": w, ...}}`, that never
imports interir.ops: the built-in ones are loaded from `_TABLES` at first use (`reference`:
interir/ops/reference.py, `triton`: interir.kernels, `cuda`: interir/ops/cuda.py); `register_backend` adds
any other (a test stand-in, an out-of-tree backend). See docs/ops.md.

The backend used for a call is, in order of precedence: the call's `backend=` argument, the innermost
`use_backend(...)` context, the `INTERIR_BACKEND` environment variable, and finally `auto`: the fastest backend
proven correct on this device for the call's class (interir/ops/auto.py), the reference where no other is
measured (every CPU). Asking for a backend by name that cannot serve the input raises `BackendUnavailable`.
"""
from __future__ import annotations

import contextlib
import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import torch

from interir import fast_paths
from interir.errors import BackendNotInstalled  # noqa: F401  (re-exported for backend modules' users)

BACKENDS = ("reference", "triton", "cuda")  # the built-in backends
ENV_VAR = "INTERIR_BACKEND"

# Built-in backend -> the module whose TABLE (and optional DEVICE_TYPES) it is.
_TABLES = {
    "reference": "interir.ops.reference",
    "triton": "interir.kernels",
    "cuda": "interir.ops.cuda",
}
# backend -> device types `auto` measures it on (the built-in fused backends: CUDA devices only; on a CPU the
# Triton interpreter and the CUDA host emulation are test devices, never faster than the reference)
_AUTO_DEVICES: dict[str, tuple[str, ...]] = {"triton": ("cuda",), "cuda": ("cuda",)}
_inline: dict[str, Callable] | None = None  # set by inline(): ops run as these plain functions
_auto_chooser = None  # set by interir/ops/auto.py: an object with .choose(op, device, args) -> backend name


@dataclass
class OpImpl:
    """One backend's implementation of one op, as its table gives it.

    forward/backward: the op's plain functions (signatures in the op's contract, docs/ops.md);
    why_not(*forward args) -> None, or a one-line reason this backend cannot serve those arguments;
    saved_like(*forward args) -> an empty tensor shaped like the state forward keeps for backward (the ops
    whose contract carries saved state; None otherwise)."""

    forward: Callable
    backward: Callable
    why_not: Callable[..., str | None] | None = None
    saved_like: Callable | None = None


class Slot:
    """The current OpImpl behind one (op, backend) pair of torch.library ops. The ops call through the slot,
    so registering a backend again (a test stand-in, say) swaps its functions without redefining the ops,
    which torch.library cannot do."""

    def __init__(self, impl: OpImpl):
        self.impl = impl


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run this operation on these inputs; the message says why."""


# op name -> define(backend, slot, device_types) -> the callable custom op
_CONTRACTS: dict[str, Callable[[str, Slot, Any], Callable]] = {}
# backend -> op name -> (callable custom op, slot)
_REGISTRY: dict[str, dict[str, tuple[Callable, Slot]]] = {}
# backend -> why it cannot be used ("" once it loaded)
_UNAVAILABLE: dict[str, str] = {}
_DEFINED: dict[tuple[str, str], tuple[Callable, Slot]] = {}
_override: str | None = None


def declare_op(name: str, define: Callable[[str, Slot, Any], Callable]) -> None:
    """Called by an op's contract module: `define(backend, slot, device_types)` makes that backend's ops."""
    _CONTRACTS[name] = define


def op_names() -> tuple[str, ...]:
    return tuple(_CONTRACTS)


def register_backend(name: str, table: Mapping[str, Mapping[str, Callable]], device_types=None,
                     auto_devices: tuple[str, ...] | None = None) -> None:
    """Add `table` (op name -> {"forward", "backward", optional "why_not", "saved_like"}) to the backend `name`.

    Each op of the table becomes torch.library ops `interir::<op>_<name>` (and `<op>_backward_<name>`);
    `device_types` restricts them to a device type ("cuda"), None serves every device. Registering a name
    again adds the ops it lists and replaces their functions (the ops it does not list stay). An op no table
    gave is reported as such when it is asked for. `auto_devices`: the device types on which `auto` measures
    this backend against the others (default: "cuda")."""
    name = _check_backend_name(name)
    if auto_devices is not None:
        _AUTO_DEVICES[name] = tuple(auto_devices)
    if name in _TABLES and name not in _REGISTRY:
        load(name)  # a built-in (or module) backend: its own table first, then what is added here
    _add_table(name, table, device_types)


def _add_table(name: str, table: Mapping[str, Mapping[str, Callable]], device_types) -> None:
    entries = dict(_REGISTRY.get(name, {}))
    for op, fns in table.items():
        if op not in _CONTRACTS:
            raise ValueError(f"backend {name!r} implements an unknown op {op!r}; known: {', '.join(_CONTRACTS)}")
        missing = [k for k in ("forward", "backward") if k not in fns]
        if missing:
            raise ValueError(f"backend {name!r}: op {op!r} lacks {' and '.join(missing)}")
        impl = OpImpl(fns["forward"], fns["backward"], fns.get("why_not"), fns.get("saved_like"))
        if (op, name) in _DEFINED:
            fn, slot = _DEFINED[(op, name)]
            slot.impl = impl
        else:
            slot = Slot(impl)
            fn = _CONTRACTS[op](name, slot, device_types)
            _DEFINED[(op, name)] = (fn, slot)
        entries[op] = (fn, slot)
    _REGISTRY[name] = entries
    _UNAVAILABLE[name] = ""


def register_backend_module(name: str, module: str) -> None:
    """Make `name` the backend whose table the module `module` holds (TABLE, optional DEVICE_TYPES), loaded
    at first use like the built-in ones; an import that raises BackendNotInstalled makes its message the
    backend's reason for being unavailable."""
    _check_backend_name(name)
    if name in BACKENDS:
        raise ValueError(f"{name!r} is a built-in backend")
    _TABLES[name] = module
    _UNAVAILABLE.pop(name, None)
    _REGISTRY.pop(name, None)


def unregister_backend(name: str) -> None:
    """Forget a backend registered with `register_backend` (its torch.library ops stay defined, unused)."""
    if name in BACKENDS:
        raise ValueError(f"{name!r} is a built-in backend")
    _REGISTRY.pop(name, None)
    _UNAVAILABLE.pop(name, None)
    _TABLES.pop(name, None)
    _AUTO_DEVICES.pop(name, None)


def _check_backend_name(name: str) -> str:
    if not isinstance(name, str) or not name.isidentifier() or name == "auto":
        raise ValueError(f"a backend name must be an identifier other than 'auto', got {name!r}")
    return name


def load(backend: str) -> str | None:
    """Load a backend once; return None when it can be used, else why not."""
    if backend in _UNAVAILABLE:
        return _UNAVAILABLE[backend] or None
    if backend not in _TABLES:
        return f"no backend {backend!r} is registered"
    module_name = _TABLES[backend]
    reason = ""
    try:
        module = importlib.import_module(module_name)
        _add_table(backend, module.TABLE, getattr(module, "DEVICE_TYPES", None))
    except BackendNotInstalled as exc:
        reason = str(exc)
    except ModuleNotFoundError as exc:
        reason = (
            f"not part of this installation ({module_name} is missing)"
            if exc.name and module_name.startswith(exc.name)
            else f"a dependency is missing: {exc.name}"
        )
    except Exception as exc:  # a broken build must say why, not crash every op call
        reason = f"failed to load ({type(exc).__name__}: {exc})"
    _UNAVAILABLE[backend] = reason
    return reason or None


def auto_devices(name: str) -> tuple[str, ...]:
    """The device types on which `auto` measures backend `name` (never the reference: it is the baseline)."""
    return () if name == "reference" else _AUTO_DEVICES.get(name, ("cuda",))


def reference_serves(device_type: str) -> bool:
    """Whether an op called now on `device_type` runs on the reference: it is the backend asked for, or it is `auto`
    and no backend is measured against the reference on that device type (every CPU, unless a registered backend
    says otherwise). A caller that would skip the ops for the reference's own fused CPU kernels asks this first."""
    name = current_backend()
    if name == "reference":
        return True
    return name == "auto" and not any(device_type in auto_devices(b) for b in backend_names())


def set_auto_chooser(chooser) -> None:
    """Install `auto`'s chooser: an object with .choose(op, device, args) -> a backend name (interir/ops/auto.py)."""
    global _auto_chooser
    _auto_chooser = chooser


def auto_chooser():
    """The chooser `auto` uses now."""
    return _auto_chooser


def backend_names() -> tuple[str, ...]:
    """The built-in backends, then any registered with `register_backend` or `register_backend_module`."""
    extra = [n for n in (*_TABLES, *_REGISTRY) if n not in BACKENDS]
    return BACKENDS + tuple(dict.fromkeys(extra))


def available_backends() -> dict[str, str | None]:
    """{backend: None if it can be used, else the reason it cannot}."""
    return {name: load(name) for name in backend_names()}


def validate_name(name: str) -> str:
    name = name.strip().lower()
    if name != "auto" and name not in backend_names():
        raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(backend_names() + ('auto',))}")
    return name


def current_backend() -> str:
    """The backend requested by the innermost `use_backend`, else $INTERIR_BACKEND, else 'auto'."""
    if _override is not None:
        return _override
    return validate_name(os.environ.get(ENV_VAR, "auto") or "auto")


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Run the enclosed ops on backend `name` (`reference`, `triton`, `cuda`, a registered one, or `auto`)."""
    global _override
    previous, _override = _override, validate_name(name)
    if _override != "auto":
        load(_override)  # import the backend here, not inside a torch.compile trace
    try:
        yield _override
    finally:
        _override = previous


@contextlib.contextmanager
def inline(table: Mapping[str, Callable]) -> Iterator[None]:
    """Run the enclosed ops as the plain functions of `table` ({op name: f(*forward args)}) instead of through
    their torch.library ops: what a graph exporter must see (docs/export.md), since ONNX and a deployed
    ExportedProgram know nothing of this package's custom ops. An op the table lacks dispatches as usual."""
    global _inline
    previous, _inline = _inline, dict(table)
    try:
        yield
    finally:
        _inline = previous


def why_not(backend: str, op_name: str, *args) -> str | None:
    """None if `backend` can run `op_name` on these arguments, else a one-line reason."""
    reason = load(backend)
    if reason:
        return reason
    entry = _REGISTRY[backend].get(op_name)
    if entry is None:
        return f"it has no implementation of {op_name}"
    check = entry[1].impl.why_not
    return check(*args) if check is not None else None


def op_callable(backend: str, op_name: str) -> Callable:
    """The torch.library op of `op_name` on `backend` (loaded if needed); BackendUnavailable if there is none."""
    reason = load(backend)
    if reason or op_name not in _REGISTRY.get(backend, {}):
        raise BackendUnavailable(f"backend '{backend}' has no {op_name}: {reason or 'not in its table'}")
    return _REGISTRY[backend][op_name][0]


def dispatch(op_name: str, device: torch.device, backend: str | None, *args):
    """Call `op_name` on the chosen backend with `args`; `device` is where the inputs live."""
    if _inline is not None and op_name in _inline:
        return _inline[op_name](*args)
    name = validate_name(backend) if backend is not None else current_backend()
    if name != "auto":
        reason = why_not(name, op_name, *args)
        if reason:
            raise BackendUnavailable(f"backend '{name}' cannot run {op_name}: {reason}")
        return _call(name, op_name, args)
    chosen = _auto_chooser.choose(op_name, device, args) if _auto_chooser is not None else "reference"
    if chosen != "reference" and why_not(chosen, op_name, *args) is not None:
        chosen = "reference"  # the class's choice cannot serve this very call (a size limit): the truth can
    reason = why_not(chosen, op_name, *args)
    if reason:
        raise BackendUnavailable(f"no backend can run {op_name} on {device.type} inputs: {reason}")
    return _call(chosen, op_name, args)


def _call(backend: str, op_name: str, args: tuple):
    """`backend`'s torch.library op of `op_name` on args; or, where nothing could tell the difference, its forward
    function directly: no gradient wanted, plain tensors, nothing tracing or watching (fast_paths.unobserved), the
    fast paths on. The op's wrapper costs tens of µs a call, a sixth of the `small` network's fixed cost per image
    (docs/performance.md, "The fixed cost of a forward")."""
    op, slot = _REGISTRY[backend][op_name]
    if fast_paths.enabled() and _no_grad_wanted(args) and fast_paths.unobserved():
        return slot.impl.forward(*args)
    return op(*args)


def _no_grad_wanted(args: tuple) -> bool:
    """Whether the tensors among args are plain tensors (no subclass) of which autograd would record nothing."""
    grad = torch.is_grad_enabled()
    for a in args:
        if isinstance(a, torch.Tensor) and (type(a) not in (torch.Tensor, torch.nn.Parameter) or (grad and a.requires_grad)):
            return False
    return True


def preload_requested() -> None:
    """Load the backend $INTERIR_BACKEND names, at import time rather than inside a torch.compile trace."""
    name = os.environ.get(ENV_VAR, "auto").strip().lower()
    if name in BACKENDS:
        load(name)
