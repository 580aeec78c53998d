"""The `cuda` backend: the hand-written CUDA kernels of csrc/ (interir._C) registered as torch.library ops.

Importing this module registers interir::<op>_cuda for the three operations; it raises BackendNotInstalled
(the backend then reports itself unavailable with that reason) when the extension is not built. With
INTERIR_CUDA_EMULATE=1 the same ops run the kernels' host emulation on CPU tensors (see _cuda_build).
"""
from __future__ import annotations

import torch

from interir.ops.explainable_conv import define_backend as define_conv_backend
from interir.ops.fft_loss import define_backend as define_loss_backend
from interir.ops.kron import define_backend as define_kron_backend
from interir.ops._cuda_build import emulating, load_extension

_C = load_extension()
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
DEVICE_TYPE = _C.device_type  # "cuda", or "cpu" for the host emulation


def _kernel_size(args) -> int | None:
    """The kernel size of an explainable-conv call, None for the other ops."""
    if len(args) == 4 and isinstance(args[2], int) and not isinstance(args[2], bool):  # attention(x, θ, k, τ)
        return args[2]
    if len(args) == 5 and isinstance(args[1], torch.Tensor) and args[1].dim() == 4:  # conv(x, W, b, A, groups)
        return args[1].shape[-1]
    return None


def supports(*args, **kwargs) -> str | None:
    """None if the CUDA kernels can take these op arguments, else a one-line reason."""
    for value in (*args, *kwargs.values()):
        if not isinstance(value, torch.Tensor):
            continue
        if value.device.type != DEVICE_TYPE:
            if DEVICE_TYPE == "cpu":
                return f"its host emulation (INTERIR_CUDA_EMULATE=1) takes CPU tensors, got a {value.device.type} tensor"
            return f"the CUDA kernels need CUDA tensors, got a {value.device.type} tensor"
        if value.dtype not in DTYPES:
            return f"the CUDA kernels take float32, bfloat16 or float16, got {str(value.dtype).replace('torch.', '')}"
    k = _kernel_size(args)
    if k is not None and k > _C.kernel_size_max:
        return f"the CUDA kernels take kernel sizes up to {_C.kernel_size_max}, got {k}"
    return None


_device_types = None if emulating() else "cuda"

define_conv_backend(
    "cuda",
    attention=_C.explainable_attention,
    attention_backward=lambda g, x, theta, attn, tau: tuple(_C.explainable_attention_backward(g, x, theta, attn, tau)),
    conv=_C.modulated_conv,
    conv_backward=lambda g, x, w, attn, groups: tuple(_C.modulated_conv_backward(g, x, w, attn, groups)),
    device_types=_device_types,
    supports=supports,
)
define_kron_backend(
    "cuda",
    apply=_C.kron_apply,
    apply_backward=lambda g, x, p1, p2, tr: tuple(_C.kron_apply_backward(g, x, p1, p2, tr)),
    step=_C.kron_step,
    step_backward=lambda g, f, g1, g2, r, eta: tuple(_C.kron_step_backward(g, f, g1, g2, r, eta)),
    device_types=_device_types,
    supports=supports,
)
define_loss_backend(
    "cuda",
    loss=_C.fft_l1_loss,
    loss_backward=lambda g, pred, target: tuple(_C.fft_l1_loss_backward(g, pred, target)),
    device_types=_device_types,
    supports=supports,
)
