"""Kronecker-factored degradation operator (docs/model.md, "Degradation model") and the RESM pieces on it.

Contract (docs/ops.md): a backend's table gives, for `kron_apply`,
    forward(x, p1, p2, transpose) -> y                   P(X) = P1·X·P2 (transpose: P1ᵀ·X·P2ᵀ) per (b, c)
    backward(grad_y, x, p1, p2, transpose) -> (dx, dp1, dp2)
and for `kron_step` (the RESM update with the Grams of `kron_gram`),
    forward(x, f, gram1, gram2, r, eta) -> X − η·(G1·F·G2 + R)
    backward(grad_out, f, gram1, gram2, r, eta) -> (dx, df, dgram1, dgram2, dr, deta)
x, f, r: B×C×h×w; p1, gram1: B×C×h×h; p2, gram2: B×C×w×w; eta: 0-dim float32 (float64 for float64 data).
Each becomes `interir::<op>_<backend>` and `interir::<op>_backward_<backend>` with fakes, autograd and flops.
"""
from __future__ import annotations

import torch
from torch import Tensor

from interir.ops import backends
from interir.ops._common import check, common_dtype, float_dtype_of, register_flops, scalar_tensor, shape_text


def kron_flops(x_shape, p1_shape=None, p2_shape=None) -> int:
    """FLOPs of P1·(X·P2) (2 per multiply-add) on B×C×h×w maps: 2·B·C·(h·w² + h²·w)."""
    b, c, h, w = x_shape
    return 2 * b * c * (h * w * w + h * h * w)


def _define_apply(backend: str, slot: backends.Slot, device_types=None):
    @torch.library.custom_op(f"interir::kron_apply_{backend}", mutates_args=(), device_types=device_types)
    def apply_op(x: Tensor, p1: Tensor, p2: Tensor, transpose: bool) -> Tensor:
        return slot.impl.forward(x, p1, p2, transpose)

    @apply_op.register_fake
    def _(x, p1, p2, transpose):
        return torch.empty_like(x)

    @torch.library.custom_op(f"interir::kron_apply_backward_{backend}", mutates_args=(), device_types=device_types)
    def apply_backward_op(
        grad_y: Tensor, x: Tensor, p1: Tensor, p2: Tensor, transpose: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        return slot.impl.backward(grad_y, x, p1, p2, transpose)

    @apply_backward_op.register_fake
    def _(grad_y, x, p1, p2, transpose):
        return torch.empty_like(x), torch.empty_like(p1), torch.empty_like(p2)

    def setup(ctx, inputs, output):
        x, p1, p2, transpose = inputs
        ctx.save_for_backward(x, p1, p2)
        ctx.transpose = transpose

    def grad(ctx, grad_y):
        x, p1, p2 = ctx.saved_tensors
        dx, dp1, dp2 = apply_backward_op(grad_y.contiguous(), x, p1, p2, ctx.transpose)
        return dx, dp1, dp2, None

    apply_op.register_autograd(grad, setup_context=setup)
    register_flops(f"kron_apply_{backend}", lambda x, *args, out_shape=None, **kw: kron_flops(x))
    # dX = Aᵀ·dY·Bᵀ, dA = dY·(X·B)ᵀ, dB = (A·X)ᵀ·dY: six products of the forward's size
    register_flops(f"kron_apply_backward_{backend}", lambda g, x, *args, out_shape=None, **kw: 3 * kron_flops(x))
    return apply_op


def _define_step(backend: str, slot: backends.Slot, device_types=None):
    @torch.library.custom_op(f"interir::kron_step_{backend}", mutates_args=(), device_types=device_types)
    def step_op(x: Tensor, f: Tensor, gram1: Tensor, gram2: Tensor, r: Tensor, eta: Tensor) -> Tensor:
        return slot.impl.forward(x, f, gram1, gram2, r, eta)

    @step_op.register_fake
    def _(x, f, gram1, gram2, r, eta):
        return torch.empty_like(x)

    @torch.library.custom_op(f"interir::kron_step_backward_{backend}", mutates_args=(), device_types=device_types)
    def step_backward_op(
        grad_out: Tensor, f: Tensor, gram1: Tensor, gram2: Tensor, r: Tensor, eta: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        return slot.impl.backward(grad_out, f, gram1, gram2, r, eta)

    @step_backward_op.register_fake
    def _(grad_out, f, gram1, gram2, r, eta):
        return (
            torch.empty_like(grad_out),
            torch.empty_like(f),
            torch.empty_like(gram1),
            torch.empty_like(gram2),
            torch.empty_like(r),
            torch.empty_like(eta),
        )

    def setup(ctx, inputs, output):
        _, f, gram1, gram2, r, eta = inputs
        ctx.save_for_backward(f, gram1, gram2, r, eta)

    def grad(ctx, grad_out):
        return step_backward_op(grad_out.contiguous(), *ctx.saved_tensors)

    step_op.register_autograd(grad, setup_context=setup)
    register_flops(f"kron_step_{backend}", lambda x, f, *args, out_shape=None, **kw: kron_flops(f))
    # V = G1·F·G2 again (for dη) and the three gradients of the product
    register_flops(f"kron_step_backward_{backend}", lambda g, f, *args, out_shape=None, **kw: 4 * kron_flops(f))
    return step_op


backends.declare_op("kron_apply", _define_apply)
backends.declare_op("kron_step", _define_step)


def _check_kron(name: str, x: Tensor, p1: Tensor, p2: Tensor) -> None:
    check(isinstance(x, Tensor) and x.dim() == 4, f"{name}: x must be a 4-D B×C×h×w tensor, got {shape_text(x)}")
    check(isinstance(p1, Tensor) and isinstance(p2, Tensor), f"{name}: P1 and P2 must be tensors")
    float_dtype_of(f"{name}: x", x)
    b, c, h, w = x.shape
    check(tuple(p1.shape) == (b, c, h, h),
          f"{name}: P1 must be {(b, c, h, h)} for x {tuple(x.shape)}, got {tuple(p1.shape)}")
    check(tuple(p2.shape) == (b, c, w, w),
          f"{name}: P2 must be {(b, c, w, w)} for x {tuple(x.shape)}, got {tuple(p2.shape)}")


def kron_apply(x: Tensor, p1: Tensor, p2: Tensor, transpose: bool = False, *, backend: str | None = None) -> Tensor:
    """P(X) = P1·X·P2 per (b, c); with `transpose`, the adjoint Pᵀ(X) = P1ᵀ·X·P2ᵀ (docs/model.md).

    x: B×C×h×w, p1: B×C×h×h, p2: B×C×w×w → B×C×h×w in the common (or autocast) dtype.
    """
    _check_kron("kron_apply", x, p1, p2)
    dtype = common_dtype(x, p1, p2)
    x, p1, p2 = (t.to(dtype).contiguous() for t in (x, p1, p2))
    return backends.dispatch("kron_apply", x.device, backend, x, p1, p2, bool(transpose))


def kron_gram(p1: Tensor, p2: Tensor) -> tuple[Tensor, Tensor]:
    """Gram matrices (P1ᵀP1: B×C×h×h, P2P2ᵀ: B×C×w×w) so that PᵀP(X) = kron_apply(X, G1, G2).

    Computed once per RESM and shared by its two uses of PᵀP.
    """
    check(isinstance(p1, Tensor) and p1.dim() >= 2 and p1.shape[-1] == p1.shape[-2],
          f"kron_gram: P1 must be a stack of square h×h matrices, got {shape_text(p1)}")
    check(isinstance(p2, Tensor) and p2.dim() >= 2 and p2.shape[-1] == p2.shape[-2],
          f"kron_gram: P2 must be a stack of square w×w matrices, got {shape_text(p2)}")
    check(p1.shape[:-2] == p2.shape[:-2],
          f"kron_gram: P1 and P2 must share their leading B×C shape, got {tuple(p1.shape)} and {tuple(p2.shape)}")
    return p1.transpose(-1, -2) @ p1, p2 @ p2.transpose(-1, -2)


def kron_normal(x: Tensor, gram1: Tensor, gram2: Tensor, *, backend: str | None = None) -> Tensor:
    """PᵀP(X) = G1·X·G2 from the Grams of `kron_gram` (symmetric, so no transpose is needed)."""
    return kron_apply(x, gram1, gram2, False, backend=backend)


def kron_step(
    x: Tensor, f: Tensor, gram1: Tensor, gram2: Tensor, r: Tensor, eta: Tensor, *, backend: str | None = None
) -> Tensor:
    """X − η·(G1·F·G2 + R): the RESM update X ← X − η·V with V = PᵀP(F) + R (docs/model.md).

    x, f, r: B×C×h×w; gram1: B×C×h×h; gram2: B×C×w×w; eta: 1-element tensor → B×C×h×w.
    """
    _check_kron("kron_step", f, gram1, gram2)
    check(isinstance(x, Tensor) and isinstance(r, Tensor) and x.shape == f.shape and r.shape == f.shape,
          f"kron_step: x, f, r must share one shape, got {tuple(x.shape)}, {tuple(f.shape)}, {tuple(r.shape)}")
    dtype = common_dtype(x, f, gram1, gram2, r)
    x, f, gram1, gram2, r = (t.to(dtype).contiguous() for t in (x, f, gram1, gram2, r))
    eta = scalar_tensor("kron_step: eta", eta, x).to(torch.float64 if dtype == torch.float64 else torch.float32)
    return backends.dispatch("kron_step", x.device, backend, x, f, gram1, gram2, r, eta)
