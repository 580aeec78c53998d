"""Kronecker-factored degradation operator (SPEC §1) and the RESM pieces built on it.

Ops per backend: `interir::kron_apply_<backend>` (P(X) = P1·X·P2, or Pᵀ(X) = P1ᵀ·X·P2ᵀ) and
`interir::kron_step_<backend>` (the RESM gradient step X − η·(PᵀP(F) + R) with the Gram matrices of
`kron_gram`), each with a fake implementation and an autograd formula whose backward is an op of the same
backend. `define_backend` is how a backend plugs in.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from interir.ops import backends
from interir.ops._common import shape_text, check, common_dtype, float_dtype_of, scalar_tensor


def define_backend(
    backend: str,
    *,
    apply: Callable,
    apply_backward: Callable,
    step: Callable,
    step_backward: Callable,
    device_types=None,
    supports: Callable | None = None,
) -> None:
    """Register the two ops of `backend` from plain functions with the signatures of interir.ops.reference."""

    @torch.library.custom_op(f"interir::kron_apply_{backend}", mutates_args=(), device_types=device_types)
    def apply_op(x: Tensor, p1: Tensor, p2: Tensor, transpose: bool) -> Tensor:
        return apply(x, p1, p2, transpose)

    @apply_op.register_fake
    def _(x, p1, p2, transpose):
        return torch.empty_like(x)

    @torch.library.custom_op(f"interir::kron_apply_backward_{backend}", mutates_args=(), device_types=device_types)
    def apply_backward_op(
        grad_y: Tensor, x: Tensor, p1: Tensor, p2: Tensor, transpose: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        return apply_backward(grad_y, x, p1, p2, transpose)

    @apply_backward_op.register_fake
    def _(grad_y, x, p1, p2, transpose):
        return torch.empty_like(x), torch.empty_like(p1), torch.empty_like(p2)

    def apply_setup(ctx, inputs, output):
        x, p1, p2, transpose = inputs
        ctx.save_for_backward(x, p1, p2)
        ctx.transpose = transpose

    def apply_grad(ctx, grad_y):
        x, p1, p2 = ctx.saved_tensors
        dx, dp1, dp2 = apply_backward_op(grad_y.contiguous(), x, p1, p2, ctx.transpose)
        return dx, dp1, dp2, None

    apply_op.register_autograd(apply_grad, setup_context=apply_setup)

    @torch.library.custom_op(f"interir::kron_step_{backend}", mutates_args=(), device_types=device_types)
    def step_op(x: Tensor, f: Tensor, gram1: Tensor, gram2: Tensor, r: Tensor, eta: Tensor) -> Tensor:
        return step(x, f, gram1, gram2, r, eta)

    @step_op.register_fake
    def _(x, f, gram1, gram2, r, eta):
        return torch.empty_like(x)

    @torch.library.custom_op(f"interir::kron_step_backward_{backend}", mutates_args=(), device_types=device_types)
    def step_backward_op(
        grad_out: Tensor, f: Tensor, gram1: Tensor, gram2: Tensor, r: Tensor, eta: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        return step_backward(grad_out, f, gram1, gram2, r, eta)

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

    def step_setup(ctx, inputs, output):
        _, f, gram1, gram2, r, eta = inputs
        ctx.save_for_backward(f, gram1, gram2, r, eta)

    def step_grad(ctx, grad_out):
        return step_backward_op(grad_out.contiguous(), *ctx.saved_tensors)

    step_op.register_autograd(step_grad, setup_context=step_setup)

    backends.register(backend, "kron_apply", apply_op, supports)
    backends.register(backend, "kron_step", step_op, supports)


def _check_kron(name: str, x: Tensor, p1: Tensor, p2: Tensor) -> None:
    check(isinstance(x, Tensor) and x.dim() == 4, f"{name}: x must be a 4-D B×C×h×w tensor, got {shape_text(x)}")
    check(isinstance(p1, Tensor) and isinstance(p2, Tensor), f"{name}: P1 and P2 must be tensors")
    float_dtype_of(f"{name}: x", x)
    b, c, h, w = x.shape
    check(tuple(p1.shape) == (b, c, h, h), f"{name}: P1 must be {(b, c, h, h)} for x {tuple(x.shape)}, got {tuple(p1.shape)}")
    check(tuple(p2.shape) == (b, c, w, w), f"{name}: P2 must be {(b, c, w, w)} for x {tuple(x.shape)}, got {tuple(p2.shape)}")


def kron_apply(x: Tensor, p1: Tensor, p2: Tensor, transpose: bool = False, *, backend: str | None = None) -> Tensor:
    """P(X) = P1·X·P2 per (b, c); with `transpose`, the adjoint Pᵀ(X) = P1ᵀ·X·P2ᵀ (SPEC §1).

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
    """X − η·(G1·F·G2 + R): the RESM update X ← X − η·V with V = PᵀP(F) + R (SPEC §2).

    x, f, r: B×C×h×w; gram1: B×C×h×h; gram2: B×C×w×w; eta: 1-element tensor → B×C×h×w.
    """
    _check_kron("kron_step", f, gram1, gram2)
    check(isinstance(x, Tensor) and isinstance(r, Tensor) and x.shape == f.shape and r.shape == f.shape,
          f"kron_step: x, f, r must share one shape, got {tuple(x.shape)}, {tuple(f.shape)}, {tuple(r.shape)}")
    dtype = common_dtype(x, f, gram1, gram2, r)
    x, f, gram1, gram2, r = (t.to(dtype).contiguous() for t in (x, f, gram1, gram2, r))
    eta = scalar_tensor("kron_step: eta", eta, x).to(torch.float64 if dtype == torch.float64 else torch.float32)
    return backends.dispatch("kron_step", x.device, backend, x, f, gram1, gram2, r, eta)
