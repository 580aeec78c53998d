"""The device's own ceilings, measured at the start of every run, against which op figures are read.

- memory: a large device-to-device copy, dst.copy_(src); GB/s = 2 · bytes / time (read + write);
- compute: a large square matmul, c = a @ b; TFLOP/s = 2 · n³ / time, measured in float32 and in bfloat16,
  and an op is compared with the one of its own dtype. On CUDA float32 matmuls run in true float32 unless
  torch.backends.cuda.matmul.allow_tf32 is set (recorded); on CPU the bfloat16 figure depends on the CPU's
  bfloat16 instructions (recorded as the ATen CPU capability).
"""
from __future__ import annotations

import torch

from bench.timing import describe_error, time_in_turns

# (copy bytes, matmul side) per kind of run
_SIZES = {
    "cuda": (1 << 30, 8192),
    "cpu": (256 << 20, 2048),
    "smoke": (8 << 20, 256),
}


def measure_ceilings(device: torch.device, *, smoke: bool = False, repeats: int | None = None) -> dict:
    """{"copy": {...gbps}, "matmul": {"fp32": {...tflops}, "bf16": {...}}, "notes": [...]}; a part that fails
    carries "error" instead of its figure."""
    copy_bytes, side = _SIZES["smoke" if smoke else device.type]
    budget = 0.3 if device.type == "cuda" else 1.0
    low, high = (1, 1) if smoke else ((10, 200) if device.type == "cuda" else (3, 20))
    if repeats is not None:
        low = high = repeats
    out: dict = {"notes": []}

    try:
        src = torch.empty(copy_bytes // 4, dtype=torch.float32, device=device).uniform_()
        dst = torch.empty_like(src)
        timing = time_in_turns({"copy": lambda: dst.copy_(src)}, device, warmup=2, budget_s=budget,
                               min_repeats=low, max_repeats=high)["copy"]
        if timing.ok:
            out["copy"] = {"bytes": copy_bytes, "median_ms": timing.median_s * 1e3, "repeats": len(timing.times_s),
                           "gbps": 2 * copy_bytes / timing.median_s / 1e9}
        else:
            out["copy"] = {"bytes": copy_bytes, "error": timing.error}
        del src, dst
    except Exception as exc:  # e.g. out of memory on a small device
        out["copy"] = {"bytes": copy_bytes, "error": describe_error(exc)}

    out["matmul"] = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        try:
            a = torch.randn(side, side, device=device).to(dtype)
            b = torch.randn(side, side, device=device).to(dtype)
            c = torch.empty(side, side, device=device, dtype=dtype)
            timing = time_in_turns({"mm": lambda: torch.matmul(a, b, out=c)}, device, warmup=2, budget_s=budget,
                                   min_repeats=low, max_repeats=high)["mm"]
            entry = {"n": side}
            if timing.ok:
                entry.update(median_ms=timing.median_s * 1e3, repeats=len(timing.times_s),
                             tflops=2 * side**3 / timing.median_s / 1e12)
            else:
                entry["error"] = timing.error
            out["matmul"][name] = entry
            del a, b, c
        except Exception as exc:
            out["matmul"][name] = {"n": side, "error": describe_error(exc)}
    if device.type == "cuda":
        out["notes"].append(f"fp32 matmul with allow_tf32={torch.backends.cuda.matmul.allow_tf32}; "
                            f"fp32 convolutions with cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}")
    else:
        out["notes"].append(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, "
                            f"torch threads: {torch.get_num_threads()}")
    return out


def copy_gbps(ceilings: dict) -> float | None:
    return ceilings.get("copy", {}).get("gbps")


def matmul_tflops(ceilings: dict, dtype_name: str) -> float | None:
    return ceilings.get("matmul", {}).get(dtype_name, {}).get("tflops")
