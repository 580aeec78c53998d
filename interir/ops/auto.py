"""`auto`: the fastest backend proven correct on this device, for each (op, device, dtype, shape class).

At the first call of an op for a class, every candidate backend (one whose `auto_devices` include the
device type, and whose why_not accepts the arguments) runs the call's own arguments forward and backward,
is compared with the float64 reference under the tolerance rule (interir/ops/verify.py) and, when it
agrees and is deterministic, is timed against the reference. `auto` takes the fastest one that agrees and is
no slower than the reference; a backend that crashes, refuses, disagrees or is slower is never taken (one
warning line says which and why). Choices are kept per process and on disk, in
$INTERIR_CACHE_DIR/auto-backends.json (default ~/.cache/interir), keyed by the device's name and the
torch / Triton / CUDA driver / interir versions; INTERIR_AUTO_CACHE=0 turns the disk cache off. Inside a
torch.compile trace no probe runs: a choice made before is used, else the reference (run the model once
eagerly first; `interir train` does). docs/ops.md, "Choosing a backend".
"""
from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from interir.ops import backends
from interir.ops.verify import default_timer, run_op, verify

CACHE_ENV, CACHE_DIR_ENV = "INTERIR_AUTO_CACHE", "INTERIR_CACHE_DIR"


@dataclass
class Choice:
    """What auto decided for one (op, device, dtype, shape class), and why."""

    op: str
    shape_class: str
    backend: str
    seconds: dict[str, float] = field(default_factory=dict)  # forward + backward, per timed backend
    rejected: dict[str, str] = field(default_factory=dict)  # backend -> why it was not taken


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type}:{platform.processor() or platform.machine()}"


def shape_class(args: Sequence[Any]) -> str:
    """The call's class: the dtype, each tensor's shape with every size rounded up to a power of two, and
    the other arguments as they are."""
    parts = []
    for a in args:
        if isinstance(a, Tensor):
            parts.append("x".join(str(1 << max(0, int(s) - 1).bit_length()) if s else "0" for s in a.shape) or "()")
        else:
            parts.append(repr(a))
    dtype = next((str(a.dtype).replace("torch.", "") for a in args if isinstance(a, Tensor)), "-")
    return f"{dtype} " + " ".join(parts)


def _context() -> str:
    """What makes a choice valid: the device's name (added per entry) and the software that ran it."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    from interir import __version__

    driver = "none"
    if torch.cuda.is_available():
        try:
            driver = str(torch._C._cuda_getDriverVersion())  # e.g. 13000 for a CUDA 13.0 driver
        except (AttributeError, RuntimeError):
            driver = "unknown"
    return (f"torch {torch.__version__} | triton {triton_version} | cuda {torch.version.cuda or 'none'} | "
            f"driver {driver} | interir {__version__}")


class Chooser:
    """The measuring chooser behind `auto`; `timer(op, backend, fn, device) -> seconds` can be replaced
    (the tests inject timings)."""

    def __init__(self):
        self.choices: dict[str, Choice] = {}
        self.warned: set[str] = set()
        self.timer: Callable[[str, str, Callable[[], Any], torch.device], float] = (
            lambda op, backend, fn, device: default_timer(fn, device))
        self._disk: dict[str, Any] | None = None

    # ----------------------------------------------------------------------------------------- the choice
    def choose(self, op: str, device: torch.device, args: Sequence[Any]) -> str:
        candidates = [b for b in backends.backend_names()
                      if b != "reference" and device.type in backends.auto_devices(b)]
        candidates = [b for b in candidates if backends.why_not(b, op, *args) is None]
        if not candidates:
            return "reference"  # nothing to measure against the reference
        key = f"{device_name(device)} | {op} | {shape_class(args)}"
        cached = self.choices.get(key) or self._from_disk(key)
        if cached is not None:
            return cached.backend
        if torch.compiler.is_compiling():
            self._warn(key, f"interir: auto: no backend measured yet for {op} ({shape_class(args)}) inside a "
                            f"torch.compile trace; the reference runs (run the model once eagerly first)")
            return "reference"
        choice = self._measure(op, device, args, candidates, key)
        self.choices[key] = choice
        self._to_disk(key, choice)
        return choice.backend

    def _measure(self, op: str, device: torch.device, args: Sequence[Any], candidates: list[str],
                 key: str) -> Choice:
        cls = shape_class(args)
        choice = Choice(op, cls, "reference")
        exact = run_op(op, "reference", args, dtype_of=lambda t: torch.float64)
        passing = []
        for name in candidates:
            verdict = verify(op, name, args, timer=None, reference=exact)
            if verdict.ok:
                passing.append(name)
            else:
                choice.rejected[name] = verdict.reason
                self._warn(f"{key} {name}", f"interir: auto: backend '{name}' is not used for {op} ({cls}): "
                                            f"{verdict.reason}")
        if not passing:
            return choice
        for name in ["reference", *passing]:
            choice.seconds[name] = self.timer(op, name, lambda n=name: run_op(op, n, args), device)
        best = min(passing, key=lambda n: choice.seconds[n])
        if choice.seconds[best] <= choice.seconds["reference"]:
            choice.backend = best
        for name in passing:
            if name != choice.backend:
                choice.rejected[name] = (f"slower: {choice.seconds[name] * 1e3:.3g} ms against "
                                         f"{choice.seconds[choice.backend] * 1e3:.3g} ms for '{choice.backend}'")
        return choice

    def _warn(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            print(message, file=sys.stderr)

    # ----------------------------------------------------------------------------------------- the caches
    def cache_path(self) -> Path | None:
        if os.environ.get(CACHE_ENV, "1") == "0":
            return None
        root = os.environ.get(CACHE_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "interir")
        return Path(root) / "auto-backends.json"

    def _load_disk(self) -> dict[str, Any]:
        if self._disk is None:
            self._disk = {}
            path = self.cache_path()
            if path is not None and path.is_file():
                try:
                    data = json.loads(path.read_text(encoding="utf-8"))
                    self._disk = data if isinstance(data, dict) else {}
                except (OSError, ValueError):
                    self._disk = {}  # a damaged cache is measured again, never trusted
        return self._disk

    def _from_disk(self, key: str) -> Choice | None:
        entry = self._load_disk().get(_context(), {}).get(key)
        try:
            choice = Choice(**entry) if isinstance(entry, dict) else None
        except TypeError:
            return None
        if choice is None or choice.backend not in backends.backend_names():
            return None
        self.choices[key] = choice
        return choice

    def _to_disk(self, key: str, choice: Choice) -> None:
        path = self.cache_path()
        if path is None:
            return
        data = self._load_disk()
        data.setdefault(_context(), {})[key] = asdict(choice)
        try:
            from interir.atomic import atomic_write_text

            atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))
        except OSError as exc:  # a read-only home: choices stay per process
            self._warn("cache", f"interir: auto: cannot write its cache {path} ({exc}); choices are kept per process")

    def cached_choices(self) -> dict[str, dict]:
        """Every choice known for this software (this process's and the disk cache's), by key."""
        known = {k: asdict(v) for k, v in self.choices.items()}
        for key, entry in self._load_disk().get(_context(), {}).items():
            known.setdefault(key, entry)
        return known


CHOOSER = Chooser()
backends.set_auto_chooser(CHOOSER)


def auto_choices() -> dict[str, str]:
    """{key: backend} of the choices `auto` made in this process (what training logs and checkpoints record)."""
    return {key: choice.backend for key, choice in backends.auto_chooser().choices.items()}
