"""Explainable convolution (docs/model.md, "ExplainableConv"): attention from a thresholded mask, then a
per-sample modulated convolution. The contract of two ops and their public front-ends.

Contract (docs/ops.md): a backend's table gives, for `explainable_attention`,
    forward(x, theta, kernel_size, tau) -> A                   x: B×Cin×H×W, theta: 0-dim → A: B×Cin×k×k float32
    backward(grad_A, x, theta, A, tau) -> (dx, dtheta)         (float64 for float64 x)
and for `modulated_conv`,
    forward(x, weight, bias, attn, groups) -> y                weight: Cout×Cin/groups×k×k, attn: B×Cin×k×k
    backward(grad_y, x, weight, attn, groups) -> (dx, dweight, dattn, dbias)
each with an optional why_not(*forward args). `_define_attention` / `_define_conv` make them the torch.library
ops `interir::<op>_<backend>` and `interir::<op>_backward_<backend>` with fake implementations, the autograd
formula (whose backward is the backend's own backward op) and a flop formula.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from interir import cpu_kernels
from interir.ops import backends
from interir.ops._common import autocast_dtype, check, float_dtype_of, register_flops, scalar_tensor, shape_text


def _attention_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _define_attention(backend: str, slot: backends.Slot, device_types=None):
    @torch.library.custom_op(f"interir::explainable_attention_{backend}", mutates_args=(), device_types=device_types)
    def attention_op(x: Tensor, theta: Tensor, kernel_size: int, tau: float) -> Tensor:
        return slot.impl.forward(x, theta, kernel_size, tau)

    @attention_op.register_fake
    def _(x, theta, kernel_size, tau):
        return x.new_empty((x.shape[0], x.shape[1], kernel_size, kernel_size), dtype=_attention_dtype(x))

    @torch.library.custom_op(
        f"interir::explainable_attention_backward_{backend}", mutates_args=(), device_types=device_types
    )
    def attention_backward_op(
        grad_attn: Tensor, x: Tensor, theta: Tensor, attn: Tensor, tau: float
    ) -> tuple[Tensor, Tensor]:
        return slot.impl.backward(grad_attn, x, theta, attn, tau)

    @attention_backward_op.register_fake
    def _(grad_attn, x, theta, attn, tau):
        return torch.empty_like(x), torch.empty_like(theta)

    def setup(ctx, inputs, output):
        x, theta, _, tau = inputs
        ctx.save_for_backward(x, theta, output)
        ctx.tau = tau

    def grad(ctx, grad_attn):
        x, theta, attn = ctx.saved_tensors
        dx, dtheta = attention_backward_op(grad_attn.contiguous(), x, theta, attn, ctx.tau)
        return dx, dtheta, None, None

    attention_op.register_autograd(grad, setup_context=setup)
    # Mask, pooling and softmax are element-wise work, which FlopCounterMode does not count for plain PyTorch
    # either (it counts matrix-class products): 0. The backward spreads dp back over the bins with the pooling
    # matrices, R_hᵀ·dp·R_w (interir.ops.reference): 2·B·C·H·k·(k + W).
    register_flops(f"explainable_attention_{backend}", lambda *args, out_shape=None, **kw: 0)
    register_flops(f"explainable_attention_backward_{backend}",
                   lambda g, x, *args, out_shape=None, **kw: 2 * x[0] * x[1] * x[2] * g[-1] * (g[-1] + x[3]))
    return attention_op


def conv_flops(x_shape, w_shape) -> int:
    """FLOPs of one modulated conv (2 per multiply-add), as FlopCounterMode counts the grouped conv that
    defines it: 2·B·Cout·H·W·(Cin/groups)·k²."""
    b, _, h, w = x_shape
    cout, cin_g, k, _ = w_shape
    return 2 * b * cout * h * w * cin_g * k * k


def _define_conv(backend: str, slot: backends.Slot, device_types=None):
    @torch.library.custom_op(f"interir::modulated_conv_{backend}", mutates_args=(), device_types=device_types)
    def conv_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], attn: Tensor, groups: int) -> Tensor:
        with cpu_kernels.for_autograd():  # inference calls slot.impl.forward directly (backends._call)
            return slot.impl.forward(x, weight, bias, attn, groups)

    @conv_op.register_fake
    def _(x, weight, bias, attn, groups):
        return x.new_empty((x.shape[0], weight.shape[0], x.shape[2], x.shape[3]))

    @torch.library.custom_op(f"interir::modulated_conv_backward_{backend}", mutates_args=(), device_types=device_types)
    def conv_backward_op(
        grad_y: Tensor, x: Tensor, weight: Tensor, attn: Tensor, groups: int
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        with cpu_kernels.for_autograd():
            return slot.impl.backward(grad_y, x, weight, attn, groups)

    @conv_backward_op.register_fake
    def _(grad_y, x, weight, attn, groups):
        return (
            torch.empty_like(x),
            torch.empty_like(weight),
            torch.empty_like(attn),
            weight.new_empty((weight.shape[0],)),
        )

    def setup(ctx, inputs, output):
        x, weight, bias, attn, groups = inputs
        ctx.save_for_backward(x, weight, attn)
        ctx.groups = groups
        ctx.has_bias = bias is not None
        ctx.bias_dtype = bias.dtype if bias is not None else None

    def grad(ctx, grad_y):
        x, weight, attn = ctx.saved_tensors
        dx, dweight, dattn, dbias = conv_backward_op(grad_y.contiguous(), x, weight, attn, ctx.groups)
        return dx, dweight, dbias.to(ctx.bias_dtype) if ctx.has_bias else None, dattn, None

    conv_op.register_autograd(grad, setup_context=setup)
    register_flops(f"modulated_conv_{backend}", lambda x, w, *args, out_shape=None, **kw: conv_flops(x, w))
    # dx and the per-sample kernel gradient: two convolutions of the forward's size
    register_flops(f"modulated_conv_backward_{backend}",
                   lambda g, x, w, *args, out_shape=None, **kw: 2 * conv_flops(x, w))
    return conv_op


backends.declare_op("explainable_attention", _define_attention)
backends.declare_op("modulated_conv", _define_conv)


def explainable_attention(
    x: Tensor, theta: Tensor, kernel_size: int, tau: float = 0.5, *, backend: str | None = None
) -> Tensor:
    """Attention A = k²·softmax(adaptive_avg_pool(1[x > θ], k×k)) of docs/model.md.

    x: B×Cin×H×W float, theta: 1-element tensor → A: B×Cin×k×k, float32 (float64 for float64 x).
    Gradients reach x and θ through the straight-through surrogate sigmoid((x − θ)/τ).
    """
    check(isinstance(x, Tensor) and x.dim() == 4,
          f"explainable_attention: x must be a 4-D B×C×H×W tensor, got {shape_text(x)}")
    float_dtype_of("explainable_attention: x", x)
    check(min(x.shape[1:]) >= 1, f"explainable_attention: x needs C, H, W ≥ 1, got shape {tuple(x.shape)}")
    theta = scalar_tensor("explainable_attention: theta", theta, x)
    check(isinstance(kernel_size, int) and not isinstance(kernel_size, bool) and kernel_size >= 1,
          f"explainable_attention: kernel_size must be an integer ≥ 1, got {kernel_size!r}")
    check(isinstance(tau, (int, float)) and not isinstance(tau, bool) and math.isfinite(tau) and tau > 0,
          f"explainable_attention: tau must be a finite number > 0, got {tau!r}")
    if x.shape[0] == 0:
        backend = "reference"  # an empty batch: nothing to compute, whatever the backend
    return backends.dispatch(
        "explainable_attention", x.device, backend, x.contiguous(), theta, int(kernel_size), float(tau)
    )


def modulated_conv(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    attn: Tensor,
    groups: int = 1,
    *,
    backend: str | None = None,
) -> Tensor:
    """y[b,o] = Σ_{c,t} Wt[o,c,t]·A[b,c,t]·x[b,c,·+t] + bias[o]: stride 1, 'same' padding, one shared weight.

    x: B×Cin×H×W, weight: Cout×(Cin/groups)×k×k (k odd), bias: Cout or None, attn: B×Cin×k×k → B×Cout×H×W
    in x's dtype (the autocast dtype under autocast).
    """
    check(isinstance(x, Tensor) and x.dim() == 4,
          f"modulated_conv: x must be a 4-D B×C×H×W tensor, got {shape_text(x)}")
    float_dtype_of("modulated_conv: x", x)
    check(min(x.shape[1:]) >= 1, f"modulated_conv: x needs C, H, W ≥ 1, got shape {tuple(x.shape)}")
    check(isinstance(weight, Tensor) and weight.dim() == 4,
          f"modulated_conv: weight must be a 4-D Cout×Cin×k×k tensor, got {shape_text(weight)}")
    check(isinstance(groups, int) and not isinstance(groups, bool),
          f"modulated_conv: groups must be an integer, got {groups!r}")
    k = weight.shape[-1]
    check(weight.shape[-2] == k and k % 2 == 1, f"modulated_conv: kernel must be square and odd, got {k}")
    b, cin = x.shape[:2]
    check(groups >= 1 and cin % groups == 0 and weight.shape[0] % groups == 0,
          f"modulated_conv: groups={groups} must divide Cin={cin} and Cout={weight.shape[0]}")
    check(weight.shape[1] * groups == cin,
          f"modulated_conv: weight has {weight.shape[1]}×{groups} input channels, x has {cin}")
    check(tuple(attn.shape) == (b, cin, k, k),
          f"modulated_conv: attn must be {(b, cin, k, k)}, got {tuple(attn.shape)}")
    check(bias is None or tuple(bias.shape) == (weight.shape[0],),
          f"modulated_conv: bias must have shape ({weight.shape[0]},), got "
          f"{None if bias is None else tuple(bias.shape)}")
    dtype = autocast_dtype(x.device.type) or x.dtype
    x, weight = x.to(dtype).contiguous(), weight.to(dtype).contiguous()
    if b == 0:
        backend = "reference"  # an empty batch: nothing to compute, whatever the backend
    return backends.dispatch("modulated_conv", x.device, backend, x, weight, bias, attn.contiguous(), int(groups))


def explainable_conv(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    theta: Tensor,
    *,
    tau: float = 0.5,
    groups: int = 1,
    return_attention: bool = False,
    backend: str | None = None,
):
    """ExplainableConv of docs/model.md: A = attention(x, θ); y = modulated_conv(x, Wt, bias, A).

    Returns y (B×Cout×H×W), or (y, A) with A: B×Cin×k×k when `return_attention`.
    """
    attn = explainable_attention(x, theta, weight.shape[-1], tau, backend=backend)
    y = modulated_conv(x, weight, bias, attn, groups, backend=backend)
    return (y, attn) if return_attention else y
