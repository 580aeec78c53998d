"""How every Triton op of interir picks the launch config of a kernel: one `Tuning` per kernel.

The choice, in order: the caller's `config=` (a config object, or an index into the candidates: tests run
each candidate alone); under the CPU interpreter, the interpreter's pick (by default candidates[0]: few,
wide programs, since the interpreter pays per program, not per element); with INTERIR_TRITON_AUTOTUNE=1 on
a GPU, the fastest candidate timed once per shape key (cached per process; never under
torch.use_deterministic_algorithms or CUDA graph capture, since the choice may differ between processes);
else the heuristic, a fixed function of the shapes, so that results never depend on timing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import triton

from interir.kernels._launch import device_of, interpreting

AUTOTUNE_ENV = "INTERIR_TRITON_AUTOTUNE"
_TUNED: dict[tuple, Any] = {}


def autotune_on(device: torch.device) -> bool:
    return (
        device.type == "cuda"
        and os.environ.get(AUTOTUNE_ENV) == "1"
        and not torch.are_deterministic_algorithms_enabled()
        and not torch.cuda.is_current_stream_capturing()
    )


@dataclass(frozen=True)
class Tuning:
    """The launch configs of one kernel: `candidates`, a `heuristic(key) -> config` for GPUs and, optionally,
    an `interpreter(key) -> config` (default: candidates[0])."""

    name: str
    candidates: tuple
    heuristic: Callable[[tuple], Any]
    interpreter: Callable[[tuple], Any] | None = None

    def resolve(self, config):
        """A config object from `config`: None, an index into the candidates, or a config itself."""
        if config is None:
            return None
        return self.candidates[config] if isinstance(config, int) else config

    def choose(self, key: tuple, config=None, device: torch.device | None = None,
               launch: Callable[[Any], Any] | None = None):
        """The config for shape `key` (see the module doc); `launch(cfg)` lets autotuning time candidates."""
        cfg = self.resolve(config)
        if cfg is not None:
            return cfg
        if interpreting():
            return self.interpreter(key) if self.interpreter is not None else self.candidates[0]
        if launch is not None and device is not None and autotune_on(device):
            full_key = (self.name, device.index) + tuple(key)
            cfg = _TUNED.get(full_key)
            if cfg is None:
                best = (float("inf"), None)
                for cand in self.candidates:
                    try:
                        ms = triton.testing.do_bench(lambda: launch(cand), warmup=5, rep=25)
                    except Exception:  # noqa: BLE001  (a config that does not fit this device is skipped)
                        continue
                    best = min(best, (ms, cand), key=lambda p: p[0])
                cfg = best[1] or self.heuristic(key)
                _TUNED[full_key] = cfg
            return cfg
        return self.heuristic(key)

    def run(self, key: tuple, config, device: torch.device, launch: Callable[[Any], Any]):
        """launch(chosen config) on the tensors' device."""
        with device_of(device):
            return launch(self.choose(key, config, device, launch))
