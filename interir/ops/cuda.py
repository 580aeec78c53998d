"""The `cuda` backend: the hand-written CUDA kernels of csrc/ (interir._C) as a backend table (docs/ops.md).

Importing this module loads the extension; it raises BackendNotInstalled (the backend then reports itself
unavailable with that reason) when the extension is not built. With INTERIR_CUDA_EMULATE=1 the same table
runs the kernels' host emulation on CPU tensors (see cuda_build).
"""
from __future__ import annotations

import os

import torch

from interir.errors import InterIRError
from interir.ops.cuda_build import emulating, load_extension

_C = load_extension()
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
TENSOR_DEVICE = _C.device_type  # "cuda", or "cpu" for the host emulation
DEVICE_TYPES = None if emulating() else "cuda"  # what the torch.library ops are registered for


def _tensors_why_not(*values) -> str | None:
    """A reason the kernels cannot take these tensors (device, dtype), else None."""
    for value in values:
        if not isinstance(value, torch.Tensor):
            continue
        if value.device.type != TENSOR_DEVICE:
            if TENSOR_DEVICE == "cpu":
                return (f"its host emulation (INTERIR_CUDA_EMULATE=1) takes CPU tensors, got a "
                        f"{value.device.type} tensor")
            return f"the CUDA kernels need CUDA tensors, got a {value.device.type} tensor"
        if value.dtype not in DTYPES:
            return f"the CUDA kernels take float32, bfloat16 or float16, got {str(value.dtype).replace('torch.', '')}"
    return None


def _kernel_size_why_not(k: int) -> str | None:
    if k > _C.kernel_size_max:
        return f"the CUDA kernels take kernel sizes up to {_C.kernel_size_max}, got {k}"
    return None


def attention_why_not(x, theta, kernel_size, tau) -> str | None:
    return _tensors_why_not(x, theta) or _kernel_size_why_not(kernel_size)


def conv_why_not(x, weight, bias, attn, groups) -> str | None:
    return _tensors_why_not(x, weight, bias, attn) or _kernel_size_why_not(weight.shape[-1])


TENSOR_CORES_ENV = "INTERIR_CUDA_TENSOR_CORES"
TENSOR_CORE_FORMS = ("1", "gemm", "0")  # halo tiles for 3×3 (default), the implicit GEMM, FFMA (docs/gpu.md)


def check_tensor_core_form() -> None:
    """A one-line InterIRError for an INTERIR_CUDA_TENSOR_CORES value the kernels would not understand."""
    value = os.environ.get(TENSOR_CORES_ENV)
    if value is not None and value not in TENSOR_CORE_FORMS:
        raise InterIRError(f"{TENSOR_CORES_ENV}={value!r}: expected 1 (the default), gemm or 0")


def _conv_forward(x, weight, bias, attn, groups):
    check_tensor_core_form()
    return _C.modulated_conv(x, weight, bias, attn, groups)


def _conv_backward(g, x, weight, attn, groups):
    check_tensor_core_form()
    return tuple(_C.modulated_conv_backward(g, x, weight, attn, groups))


def kron_apply_why_not(x, p1, p2, transpose) -> str | None:
    return _tensors_why_not(x, p1, p2)


def kron_step_why_not(x, f, gram1, gram2, r, eta) -> str | None:
    return _tensors_why_not(x, f, gram1, gram2, r, eta)


def loss_why_not(pred, target, keep) -> str | None:
    return _tensors_why_not(pred, target)


TABLE = {
    "explainable_attention": {
        "forward": _C.explainable_attention,
        "backward": lambda g, x, theta, attn, tau: tuple(_C.explainable_attention_backward(g, x, theta, attn, tau)),
        "why_not": attention_why_not,
    },
    "modulated_conv": {
        "forward": _conv_forward,
        "backward": _conv_backward,
        "why_not": conv_why_not,
    },
    "kron_apply": {
        "forward": _C.kron_apply,
        "backward": lambda g, x, p1, p2, tr: tuple(_C.kron_apply_backward(g, x, p1, p2, tr)),
        "why_not": kron_apply_why_not,
    },
    "kron_step": {
        "forward": _C.kron_step,
        "backward": lambda g, f, g1, g2, r, eta: tuple(_C.kron_step_backward(g, f, g1, g2, r, eta)),
        "why_not": kron_step_why_not,
    },
    "fft_l1_loss": {  # keeps nothing for its backward, which recomputes one rfft2
        "forward": lambda pred, target, keep: (_C.fft_l1_loss(pred, target), pred.new_empty((0,))),
        "backward": lambda g, pred, target, saved: tuple(_C.fft_l1_loss_backward(g, pred, target)),
        "why_not": loss_why_not,
    },
}
