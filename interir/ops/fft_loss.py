"""Frequency loss (docs/model.md, "Loss"): the contract of `fft_l1_loss` and its public front-end.

Contract (docs/ops.md): a backend's table gives
    forward(pred, target, keep) -> (loss, saved)     loss: 0-dim float32 (float64 for float64 input)
    backward(grad_loss, pred, target, saved) -> (dpred, dtarget)
    saved_like(pred, target, keep) -> an empty tensor shaped like `saved`   (optional: default an empty tensor)
`saved` is whatever state the backend's forward keeps for its backward when `keep` is true (the Triton
backend keeps the int8 sign spectrum, the others keep nothing and recompute); `keep` is true exactly when a
gradient will be asked for. It becomes `interir::fft_l1_loss_<backend>` and
`interir::fft_l1_loss_backward_<backend>` with fakes, autograd and flop formulas.
"""
from __future__ import annotations

import torch
from torch import Tensor

from interir.ops import backends
from interir.ops._common import check, float_dtype_of, register_flops


def _loss_dtype(pred: Tensor) -> torch.dtype:
    return torch.float64 if pred.dtype == torch.float64 else torch.float32


def _define_loss(backend: str, slot: backends.Slot, device_types=None):
    @torch.library.custom_op(f"interir::fft_l1_loss_{backend}", mutates_args=(), device_types=device_types)
    def loss_op(pred: Tensor, target: Tensor, keep: bool) -> tuple[Tensor, Tensor]:
        return slot.impl.forward(pred, target, keep)

    @loss_op.register_fake
    def _(pred, target, keep):
        saved_like = slot.impl.saved_like
        saved = saved_like(pred, target, keep) if saved_like is not None else pred.new_empty((0,))
        return pred.new_empty((), dtype=_loss_dtype(pred)), saved

    @torch.library.custom_op(f"interir::fft_l1_loss_backward_{backend}", mutates_args=(), device_types=device_types)
    def loss_backward_op(grad_loss: Tensor, pred: Tensor, target: Tensor, saved: Tensor) -> tuple[Tensor, Tensor]:
        return slot.impl.backward(grad_loss, pred, target, saved)

    @loss_backward_op.register_fake
    def _(grad_loss, pred, target, saved):
        return torch.empty_like(pred), torch.empty_like(target)

    def setup(ctx, inputs, output):
        pred, target, keep = inputs
        ctx.save_for_backward(pred, target, output[1])
        ctx.keep = keep

    def grad(ctx, grad_loss, _grad_saved):
        if not ctx.keep:
            raise RuntimeError(f"interir::fft_l1_loss_{backend} ran with keep=False, so it kept nothing for its "
                               f"backward; call it with keep=True")
        pred, target, saved = ctx.saved_tensors
        dpred, dtarget = loss_backward_op(grad_loss, pred, target, saved)
        return dpred, dtarget, None

    loss_op.register_autograd(grad, setup_context=setup)
    # FFTs and the L1 sum are not matrix-class products; FlopCounterMode counts torch.fft as 0 too.
    register_flops(f"fft_l1_loss_{backend}", lambda *args, out_shape=None, **kw: 0)
    register_flops(f"fft_l1_loss_backward_{backend}", lambda *args, out_shape=None, **kw: 0)
    return loss_op


backends.declare_op("fft_l1_loss", _define_loss)


def fft_l1_loss(pred: Tensor, target: Tensor, *, backend: str | None = None) -> Tensor:
    """mean(|Re F(pred − target)| + |Im F(pred − target)|) over the full spectrum, FSNet's form (docs/model.md).

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
    keep = torch.is_grad_enabled() and (pred.requires_grad or target.requires_grad)
    loss, _ = backends.dispatch(
        "fft_l1_loss", pred.device, backend, pred.to(acc).contiguous(), target.to(acc).contiguous(), keep
    )
    return loss
