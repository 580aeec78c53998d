"""Timing of several methods that are compared with each other, run in turns (round-robin), never one after
the other, so that a change of machine load during the run hits all of them alike.

- CPU: wall time (time.perf_counter) of each call; garbage collection is off while timing.
- CUDA: CUDA events around each call with the L2 cache flushed before it (a 256 MiB write), the method
  triton.testing.do_bench uses; events are read after one synchronisation at the end.

Each method gets `warmup` untimed calls first (the first one's wall time is kept: it includes lazy
initialisation, autotuning and torch.compile). A method that raises is dropped from the rotation and its
error is kept; the others go on.
"""
from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

_L2_FLUSH_BYTES = 256 * 1024 * 1024
_flush_buffers: dict[int, torch.Tensor] = {}


@dataclass
class Timing:
    """What one method's timing produced: seconds per call, or the error that stopped it."""

    times_s: list[float] = field(default_factory=list)
    first_call_s: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.times_s)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)


def describe_error(exc: BaseException) -> str:
    """One line: the exception type and its message (whitespace collapsed, at most 300 characters)."""
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _release_after_error(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _flush_l2(device: torch.device) -> None:
    index = device.index if device.index is not None else torch.cuda.current_device()
    buffer = _flush_buffers.get(index)
    if buffer is None:
        buffer = _flush_buffers[index] = torch.empty(_L2_FLUSH_BYTES, dtype=torch.int8, device=device)
    buffer.zero_()


def auto_repeats(estimate_s: float, budget_s: float, low: int, high: int) -> int:
    """Timed calls per method: as many as fit in `budget_s` for one method, clamped to [low, high]."""
    if not math.isfinite(estimate_s) or estimate_s <= 0:
        return high
    return max(low, min(high, int(budget_s / estimate_s)))


def time_in_turns(
    methods: dict[str, Callable[[], Any]],
    device: torch.device,
    *,
    warmup: int = 1,
    repeats: int | None = None,
    budget_s: float = 1.0,
    min_repeats: int = 3,
    max_repeats: int = 100,
) -> dict[str, Timing]:
    """Time every method of `methods` (name → zero-argument callable) in turns on `device`.

    repeats: timed calls per method; None picks them from the slowest method's warm-up time so that each
    method gets about `budget_s` of timed calls, within [min_repeats, max_repeats]. Round r starts at
    method r mod n, so no method is always first. Returns name → Timing (seconds per call).
    """
    results = {name: Timing() for name in methods}
    live = dict(methods)
    estimates: dict[str, float] = {}
    for name, fn in list(live.items()):
        try:
            for i in range(max(1, warmup)):
                _synchronize(device)
                t0 = time.perf_counter()
                fn()
                _synchronize(device)
                elapsed = time.perf_counter() - t0
                if i == 0:
                    results[name].first_call_s = elapsed
                estimates[name] = elapsed
        except Exception as exc:  # one method's failure (OOM, unsupported input) must not stop the others
            results[name].error = describe_error(exc)
            del live[name]
            _release_after_error(device)
    if not live:
        return results
    n = repeats if repeats is not None else auto_repeats(max(estimates[k] for k in live), budget_s,
                                                         min_repeats, max_repeats)
    names = list(live)
    pending: dict[str, list] = {name: [] for name in names}  # CUDA: (start, end) event pairs
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(n):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                if name not in live:
                    continue
                try:
                    if device.type == "cuda":
                        _flush_l2(device)
                        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                        start.record()
                        live[name]()
                        end.record()
                        pending[name].append((start, end))
                    else:
                        t0 = time.perf_counter()
                        live[name]()
                        results[name].times_s.append(time.perf_counter() - t0)
                except Exception as exc:
                    results[name].error = describe_error(exc)
                    del live[name]
                    _release_after_error(device)
        if device.type == "cuda":
            try:
                torch.cuda.synchronize(device)  # an asynchronous kernel error surfaces here
            except Exception as exc:
                for name in live:
                    results[name].error = "while timing: " + describe_error(exc)
                return results
            for name, events in pending.items():
                if name in live:
                    results[name].times_s = [s.elapsed_time(e) / 1e3 for s, e in events]
    finally:
        if gc_was_enabled:
            gc.enable()
    return results
