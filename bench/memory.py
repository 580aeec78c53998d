"""Peak memory of one call, as the extra memory it needs on top of what was allocated before it.

- CUDA: torch.cuda.max_memory_allocated() after the call − torch.cuda.memory_allocated() before it
  (tensor memory, exact; the caching allocator's reserve is not counted).
- CPU (Linux): the process's peak resident set (VmHWM) during the call − its resident set (VmRSS) before it,
  with free heap memory returned to the system first (malloc_trim) and the peak reset (/proc/self/clear_refs).
  Elsewhere: the growth of getrusage's ru_maxrss, which stays 0 when an earlier call already reached the peak.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
import sys
from typing import Any, Callable

import torch

_CUDA_METHOD = "torch.cuda.max_memory_allocated − memory_allocated before"
_RSS_METHOD = "peak RSS (VmHWM) − RSS before, peak reset and heap trimmed first"
_RUSAGE_METHOD = "growth of getrusage ru_maxrss (a lower bound)"


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Give free heap memory back to the system and reset VmHWM to the current RSS; False where impossible."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_method(device: torch.device) -> str:
    """How measure_peak measures on `device` (the CPU method it falls back to is named in its own result)."""
    if device.type == "cuda":
        return _CUDA_METHOD
    return _RSS_METHOD if sys.platform.startswith("linux") else _RUSAGE_METHOD


def measure_peak(fn: Callable[[], Any], device: torch.device) -> dict:
    """Run `fn` once; {"bytes": extra peak memory of the call, "method": how it was measured}."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return {"bytes": torch.cuda.max_memory_allocated(device) - before,
                "method": _CUDA_METHOD}
    if sys.platform.startswith("linux") and _reset_peak_rss():
        before = _proc_status_kib("VmRSS")
        fn()
        peak = _proc_status_kib("VmHWM")
        if before is not None and peak is not None:
            return {"bytes": max(0, peak - before) * 1024, "method": _RSS_METHOD}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    unit = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return {"bytes": (after - before) * unit, "method": _RUSAGE_METHOD}


def tensor_bytes(tensors) -> int:
    """Bytes of the distinct storages behind `tensors` (None entries ignored)."""
    seen: dict[int, int] = {}
    for t in tensors:
        if t is None:
            continue
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def training_state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Parameters, their gradients and the optimizer's state tensors, in bytes."""
    tensors = []
    for p in model.parameters():
        tensors += [p, p.grad]
    for state in optimizer.state.values():
        tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
    return tensor_bytes(tensors)
