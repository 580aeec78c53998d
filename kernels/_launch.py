"""Helpers shared by the Triton kernels: output allocation (NaN-poisoned on request), the device and dtype
checks behind the backend's `why_not` functions, the launch device, the dot precision, and deterministic
sums of per-program partials (fixed order, no atomics).
"""
from __future__ import annotations

import contextlib
import os

import torch
import triton
import triton.language as tl

POISON_ENV = "INTERIR_POISON_OUTPUTS"
DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # what the Triton kernels take
INT32_MAX = 2**31 - 1  # offsets within one sample are int32


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


def device_of(device: torch.device):
    """Triton launches on the current CUDA device: make it the tensors' one (nothing to do on the CPU)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def dtype_name(dtype: torch.dtype) -> str:
    """"float32", "bfloat16", …"""
    return str(dtype).replace("torch.", "")


def dot_precision(dtype: torch.dtype) -> str:
    """tl.dot's input precision for float32 operands: IEEE unless the user opted in to TF32 for float32 matrix
    products (torch.backends.cuda.matmul.allow_tf32, which torch.set_float32_matmul_precision("high") sets;
    off by default), and always IEEE under the interpreter.

    Not cudnn.allow_tf32 (on by default): the reference's batched grouped convolution does not get TF32 from
    cuDNN, so TF32 by default would put the kernels 100× further from the float64 truth than the reference
    (measured on an H200: docs/gpu.md), and `interir check` and `auto` would rightly reject them."""
    if dtype == torch.float32 and not interpreting() and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


def pow2(n: int, lo: int = 1) -> int:
    """The smallest power of two ≥ max(n, lo)."""
    return max(lo, triton.next_power_of_2(max(1, int(n))))


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
            names = ", ".join(dtype_name(d) for d in dtypes)
            return f"{backend_op} takes {names}, got {str(t.dtype).replace('torch.', '')} (use the reference backend)"
    return None


def bf16_reason(backend_op: str, tensors) -> str | None:
    """A reason to refuse bfloat16 on CPU: the Triton interpreter computes bfloat16 products wrongly."""
    if any(t.dtype == torch.bfloat16 and t.device.type == "cpu" for t in tensors):
        return f"{backend_op} runs bfloat16 only on a GPU (the Triton interpreter has no bfloat16 math)"
    return None


def tensors_reason(backend_op: str, tensors, dtypes) -> str | None:
    """device_reason, then bf16_reason: None when the kernels can take every one of `tensors`."""
    return device_reason(backend_op, tensors, dtypes) or bf16_reason(backend_op, tensors)


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


@triton.jit
def _sum_rows_kernel(src_ptr, out_ptr, S, N, BLOCK_S: tl.constexpr, BLOCK_N: tl.constexpr):
    """out[n] = Σ_s src[s, n] (float32 partials) cast to out's dtype; fixed order, one program per column block."""
    pid = tl.program_id(0)
    cols = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < N
    rows0 = tl.arange(0, BLOCK_S)
    acc = tl.zeros([BLOCK_S, BLOCK_N], dtype=tl.float32)
    for s0 in range(0, S, BLOCK_S):
        rows = s0 + rows0
        ok = (rows[:, None] < S) & col_ok[None, :]
        acc += tl.load(src_ptr + rows[:, None].to(tl.int64) * N + cols[None, :], mask=ok, other=0.0)
    tl.store(out_ptr + cols, tl.sum(acc, axis=0).to(out_ptr.dtype.element_ty), mask=col_ok)


def sum_rows(partials: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Write Σ over the first axis of float32 `partials` (S×…) into `out` (… elements, any float dtype)."""
    s = partials.shape[0]
    n = partials[0].numel()
    block_s = min(pow2(s, 2), 8)
    # the interpreter pays per program, not per element: one wide block there
    block_n = min(pow2(n), 16384) if interpreting() else 256
    with device_of(out.device):
        _sum_rows_kernel[(triton.cdiv(n, block_n),)](
            partials, out, s, n, BLOCK_S=block_s, BLOCK_N=block_n, num_warps=4
        )
    return out
