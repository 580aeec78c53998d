"""Helpers shared by the Kronecker and FFT-loss Triton kernels: output allocation (NaN-poisoned on request),
the interpreter/device check behind `supports`, and a deterministic sum of per-program partials.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

POISON_ENV = "INTERIR_POISON_OUTPUTS"


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU interpreter (TRITON_INTERPRET=1, set before importing triton)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def new_output(shape, dtype: torch.dtype, device) -> torch.Tensor:
    """An output buffer; when INTERIR_POISON_OUTPUTS=1 it is NaN-filled (integers: their maximum) so that an
    element a kernel forgot to write shows up in the tests."""
    if os.environ.get(POISON_ENV) == "1":
        fill = float("nan") if dtype.is_floating_point else torch.iinfo(dtype).max
        return torch.full(shape, fill, dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


def device_reason(backend_op: str, tensors, dtypes) -> str | None:
    """None if the Triton kernels can take `tensors`, else a one-line reason (for a backend's `supports`)."""
    for t in tensors:
        if t.device.type == "cpu":
            if not interpreting():
                return (f"{backend_op} needs CUDA tensors (got CPU tensors; CPU runs only under the Triton "
                        "interpreter, TRITON_INTERPRET=1)")
        elif t.device.type != "cuda":
            return f"{backend_op} needs CUDA tensors, got a {t.device.type} tensor"
        if t.dtype not in dtypes:
            names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
            return f"{backend_op} takes {names}, got {str(t.dtype).replace('torch.', '')} (use the reference backend)"
    return None


def bf16_reason(backend_op: str, tensors) -> str | None:
    """A reason to refuse bfloat16 on CPU: the Triton interpreter computes bfloat16 products wrongly."""
    if any(t.dtype == torch.bfloat16 and t.device.type == "cpu" for t in tensors):
        return f"{backend_op} runs bfloat16 only on a GPU (the Triton interpreter has no bfloat16 math)"
    return None


@triton.jit
def _sum_partials_kernel(partials_ptr, out_ptr, n, scale, BLOCK: tl.constexpr):
    """out[0] = scale · Σ partials, one program, a fixed order: deterministic run to run."""
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n, BLOCK):
        idx = start + offs
        acc += tl.load(partials_ptr + idx, mask=idx < n, other=0.0)
    total = tl.sum(acc, axis=0) * scale
    tl.store(out_ptr, total.to(out_ptr.dtype.element_ty))


def sum_partials(partials: torch.Tensor, out: torch.Tensor, scale: float) -> torch.Tensor:
    """Write scale·Σ partials (float32) into the one-element tensor `out` (any float dtype); returns `out`."""
    _sum_partials_kernel[(1,)](partials, out, partials.numel(), float(scale), BLOCK=1024, num_warps=4)
    return out
