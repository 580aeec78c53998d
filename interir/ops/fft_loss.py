"""Frequency loss of SPEC §3: `interir::fft_l1_loss_<backend>`, a fake implementation and its autograd."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from interir.ops import backends
from interir.ops._common import check, float_dtype_of


def _loss_dtype(pred: Tensor) -> torch.dtype:
    return torch.float64 if pred.dtype == torch.float64 else torch.float32


def define_backend(
    backend: str, *, loss: Callable, loss_backward: Callable, device_types=None, supports: Callable | None = None
) -> None:
    """Register `interir::fft_l1_loss_<backend>` from functions with the signatures of interir.ops.reference."""

    @torch.library.custom_op(f"interir::fft_l1_loss_{backend}", mutates_args=(), device_types=device_types)
    def loss_op(pred: Tensor, target: Tensor) -> Tensor:
        return loss(pred, target)

    @loss_op.register_fake
    def _(pred, target):
        return pred.new_empty((), dtype=_loss_dtype(pred))

    @torch.library.custom_op(f"interir::fft_l1_loss_backward_{backend}", mutates_args=(), device_types=device_types)
    def loss_backward_op(grad_loss: Tensor, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        return loss_backward(grad_loss, pred, target)

    @loss_backward_op.register_fake
    def _(grad_loss, pred, target):
        return torch.empty_like(pred), torch.empty_like(target)

    def setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def grad(ctx, grad_loss):
        return loss_backward_op(grad_loss, *ctx.saved_tensors)

    loss_op.register_autograd(grad, setup_context=setup)
    backends.register(backend, "fft_l1_loss", loss_op, supports)


def fft_l1_loss(pred: Tensor, target: Tensor, *, backend: str | None = None) -> Tensor:
    """mean(|Re F(pred − target)| + |Im F(pred − target)|) over the full spectrum, FSNet's form (SPEC §3).

    The mean runs over the 2·B·C·H·W real numbers of the stacked (Re, Im) spectrum, F is the unnormalised
    2-D FFT over the last two axes, and everything is computed in float32 (float64 for float64 input).
    pred, target: same shape (…×H×W, at least 2-D) → 0-dim tensor.
    """
    check(isinstance(pred, Tensor) and isinstance(target, Tensor), "fft_l1_loss: pred and target must be tensors")
    check(pred.shape == target.shape,
          f"fft_l1_loss: pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    check(pred.dim() >= 2, f"fft_l1_loss: inputs must be at least 2-D, got shape {tuple(pred.shape)}")
    float_dtype_of("fft_l1_loss: pred", pred)
    float_dtype_of("fft_l1_loss: target", target)
    check(pred.numel() > 0, f"fft_l1_loss: the inputs are empty (shape {tuple(pred.shape)}); the mean of nothing "
                            f"is undefined")
    acc = _loss_dtype(pred)
    return backends.dispatch(
        "fft_l1_loss", pred.device, backend, pred.to(acc).contiguous(), target.to(acc).contiguous()
    )
