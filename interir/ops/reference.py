"""Pure-PyTorch definitions of the three hot operations: the truth every backend is tested against.

Every function here is plain differentiable PyTorch (autograd through it gives correct gradients) and the
explicit `*_backward` functions give the same gradients in closed form; the custom ops of the `reference`
backend run these. Shapes use B batch, C / Cin / Cout channels, H×W maps, k kernel size, h×w Kronecker sizes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from interir import cpu_kernels, fast_paths

# --------------------------------------------------------------------------------------------------------
# Explainable convolution (docs/model.md): attention from a binary mask, then a per-sample modulated conv.
# --------------------------------------------------------------------------------------------------------


def adaptive_pool_matrix(n: int, k: int, *, dtype=torch.float32, device=None) -> Tensor:
    """k×n matrix R with `R @ v` = adaptive average pooling of a length-n vector to k bins.

    Bins follow PyTorch's adaptive pooling: bin i covers [floor(i·n/k), ceil((i+1)·n/k)).
    2-D adaptive pooling of an H×W map is `R_h @ m @ R_wᵀ`.
    """
    r = torch.zeros(k, n, dtype=dtype, device=device)
    for i in range(k):
        start, end = (i * n) // k, -((-(i + 1) * n) // k)
        r[i, start:end] = 1.0 / (end - start)
    return r


def explainable_attention(x: Tensor, theta: Tensor, kernel_size: int, tau: float = 0.5) -> Tensor:
    """Attention A of the explainable conv: B×Cin×H×W input → B×Cin×k×k float32 (float64 for float64 input).

    m = 1[x > θ]; p = adaptive_avg_pool(m, k×k); A = k²·softmax(p over the k² taps of each (b, c)).
    The mask's gradient is straight-through with the surrogate sigmoid((x − θ)/τ) (docs/model.md).
    """
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    b, c = x.shape[:2]
    if fast_paths.enabled() and not (torch.is_grad_enabled() and (x.requires_grad or theta.requires_grad)):
        return attention_without_grad(x.to(acc), theta.to(acc), kernel_size, tau)
    z = (x.to(acc) - theta.to(acc)) / tau
    soft = torch.sigmoid(z)
    mask = soft + ((z > 0).to(acc) - soft).detach()  # forward: hard mask; backward: sigmoid's
    pooled = F.adaptive_avg_pool2d(mask, (kernel_size, kernel_size))
    attn = torch.softmax(pooled.reshape(b, c, kernel_size**2), dim=-1) * kernel_size**2
    return attn.reshape(b, c, kernel_size, kernel_size)


def attention_without_grad(x: Tensor, theta: Tensor, kernel_size: int, tau: float, pool=None) -> Tensor:
    """`explainable_attention` when no gradient is wanted: the hard mask alone, no surrogate. x, theta in the
    accumulation dtype; `pool(mask, k)` → B×C×k×k is the adaptive average pooling (default PyTorch's).

    1[(x − θ)/τ > 0] equals 1[x > θ] in IEEE arithmetic (x − θ is 0 only for x = θ) unless the division by
    τ > 1 underflows a subnormal difference, so that case keeps the division. A NaN pixel gives a NaN
    attention for its whole (b, c) plane, as the surrogate's NaN does on the autograd path.
    """
    b, c = x.shape[:2]
    if pool is None and theta.numel() == 1 and cpu_kernels.usable(x):  # one pass (docs/performance.md)
        return cpu_kernels.attention(x, float(theta), kernel_size, tau)
    hard = (x > theta if tau <= 1 else (x - theta) / tau > 0).to(x.dtype)
    pooled = pool(hard, kernel_size) if pool is not None else F.adaptive_avg_pool2d(hard, (kernel_size, kernel_size))
    pooled = pooled.reshape(b, c, kernel_size**2)
    plane_max = x.reshape(b, c, x.shape[-2] * x.shape[-1]).amax(-1, keepdim=True)  # NaN iff the plane holds a NaN
    pooled = pooled + torch.where(torch.isnan(plane_max), plane_max, 0.0)
    attn = torch.softmax(pooled, dim=-1) * kernel_size**2
    return attn.reshape(b, c, kernel_size, kernel_size)


def explainable_attention_backward(
    grad_attn: Tensor, x: Tensor, theta: Tensor, attn: Tensor, tau: float = 0.5
) -> tuple[Tensor, Tensor]:
    """Gradients (dx: like x, dθ: like theta) of `explainable_attention` given dA (B×Cin×k×k) and A."""
    k = attn.shape[-1]
    acc = attn.dtype
    b, c, hh, ww = x.shape
    g = grad_attn.to(acc).reshape(b, c, k * k)
    s = attn.reshape(b, c, k * k) / k**2  # the softmax itself
    # softmax backward, times the k² scale: dp = k²·s ⊙ (g − Σ g·s)
    grad_pooled = (k**2 * s * (g - (g * s).sum(-1, keepdim=True))).reshape(b, c, k, k)
    rh = adaptive_pool_matrix(hh, k, dtype=acc, device=x.device)
    rw = adaptive_pool_matrix(ww, k, dtype=acc, device=x.device)
    grad_mask = rh.t() @ grad_pooled @ rw  # adjoint of p = R_h m R_wᵀ
    sig = torch.sigmoid((x.to(acc) - theta.to(acc)) / tau)
    grad_z = grad_mask * sig * (1 - sig) / tau
    return grad_z.to(x.dtype), (-grad_z.sum()).reshape(theta.shape).to(theta.dtype)


def explainable_mask(x: Tensor, theta: Tensor) -> Tensor:
    """The explanation map: channel mean of 1[x > θ], B×1×H×W in [0, 1]."""
    return (x > theta).to(torch.float32).mean(1, keepdim=True)


def _modulated_weight(weight: Tensor, attn: Tensor, groups: int) -> Tensor:
    """Per-sample weights Wt ⊙ A_b, B·Cout×(Cin/groups)×k×k. Only the reference builds them."""
    b, cin = attn.shape[:2]
    cout, cin_g, k, _ = weight.shape
    a = attn.reshape(b, groups, 1, cin_g, k, k)
    w = weight.reshape(1, groups, cout // groups, cin_g, k, k)
    return (w * a.to(weight.dtype)).reshape(b * cout, cin_g, k, k)


def modulated_conv(x: Tensor, weight: Tensor, bias: Tensor | None, attn: Tensor, groups: int = 1) -> Tensor:
    """y[b,o] = Σ_{c,t} Wt[o,c,t]·A[b,c,t]·x[b,c,·+t] + bias[o]: stride 1, 'same' padding (k odd).

    x: B×Cin×H×W, weight: Cout×(Cin/groups)×k×k (shared by the batch), bias: Cout or None,
    attn: B×Cin×k×k → y: B×Cout×H×W. Computed as one grouped conv with groups = B·groups.
    """
    b, cin, hh, ww = x.shape
    cout, k = weight.shape[0], weight.shape[-1]
    if b == 0:  # an empty batch: nothing to convolve (a grouped conv cannot have 0 groups)
        return x.new_zeros((0, cout, hh, ww))
    if k == 3 and groups == 1 and cpu_kernels.winograd_usable(x, weight, attn):  # F(4×2, 3×3), docs/performance.md
        y = cpu_kernels.winograd3x3(x, weight, bias, attn)  # it builds the kernels W ⊙ A_b itself
        if y is not None:
            return y
    w = _modulated_weight(weight, attn, groups).to(x.dtype)
    y = F.conv2d(x.reshape(1, b * cin, hh, ww), w, None, padding=k // 2, groups=b * groups)
    y = y.reshape(b, cout, hh, ww)
    if bias is not None:
        y = y + bias.to(y.dtype).reshape(1, -1, 1, 1)
    return y


def modulated_conv_backward(
    grad_y: Tensor, x: Tensor, weight: Tensor, attn: Tensor, groups: int = 1
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(dx, dWt, dA, dbias) of `modulated_conv` given dy (B×Cout×H×W).

    With the per-sample kernel K_b = Wt ⊙ A_b: dK_b is the usual conv weight gradient of sample b, and
    dWt = Σ_b dK_b ⊙ A_b, dA[b,c,t] = Σ_o dK_b[o,c,t]·Wt[o,c,t].
    """
    b, cin, hh, ww = x.shape
    cout, cin_g, k, _ = weight.shape
    if b == 0:
        return torch.zeros_like(x), torch.zeros_like(weight), torch.zeros_like(attn), weight.new_zeros(cout)
    if k == 3 and groups == 1 and cpu_kernels.winograd_usable(x, grad_y, weight, attn):  # docs/performance.md
        grads = cpu_kernels.winograd3x3_backward(grad_y, x, weight, attn)
        if grads is not None:
            return *grads, grad_y.sum((0, 2, 3)).to(weight.dtype)
    kernel = _modulated_weight(weight, attn, groups).to(x.dtype)
    g = grad_y.to(x.dtype).reshape(1, b * cout, hh, ww)
    xs = x.reshape(1, b * cin, hh, ww)
    dx = torch.nn.grad.conv2d_input(xs.shape, kernel, g, padding=k // 2, groups=b * groups)
    dk = torch.nn.grad.conv2d_weight(xs, kernel.shape, g, padding=k // 2, groups=b * groups)
    dk = dk.reshape(b, groups, cout // groups, cin_g, k, k).to(weight.dtype)
    a = attn.reshape(b, groups, 1, cin_g, k, k).to(weight.dtype)
    w = weight.reshape(1, groups, cout // groups, cin_g, k, k)
    dweight = (dk * a).sum(0).reshape(weight.shape)
    dattn = (dk * w).sum(2).reshape(attn.shape).to(attn.dtype)
    dbias = grad_y.sum((0, 2, 3)).to(weight.dtype)
    return dx.reshape(x.shape), dweight, dattn, dbias


# --------------------------------------------------------------------------------------------------------
# Kronecker-factored degradation operator (docs/model.md, degradation model): P(X) = P1·X·P2 on every (b, c).
# --------------------------------------------------------------------------------------------------------


def kron_apply(x: Tensor, p1: Tensor, p2: Tensor, transpose: bool = False) -> Tensor:
    """P(X) = P1·X·P2, or Pᵀ(X) = P1ᵀ·X·P2ᵀ when `transpose`.

    x: B×C×h×w, p1: B×C×h×h, p2: B×C×w×w → B×C×h×w.
    """
    if transpose:
        p1, p2 = p1.transpose(-1, -2), p2.transpose(-1, -2)
    return p1 @ (x @ p2)


def kron_apply_backward(
    grad_y: Tensor, x: Tensor, p1: Tensor, p2: Tensor, transpose: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dp1, dp2) of `kron_apply`. With Y = A·X·B: dX = Aᵀ·dY·Bᵀ, dA = dY·(X·B)ᵀ, dB = (A·X)ᵀ·dY."""
    a, bm = (p1.transpose(-1, -2), p2.transpose(-1, -2)) if transpose else (p1, p2)
    dx = a.transpose(-1, -2) @ grad_y @ bm.transpose(-1, -2)
    da = grad_y @ (x @ bm).transpose(-1, -2)
    db = (a @ x).transpose(-1, -2) @ grad_y
    if transpose:
        da, db = da.transpose(-1, -2).contiguous(), db.transpose(-1, -2).contiguous()  # as the fake kernel says
    return dx, da, db


def kron_gram(p1: Tensor, p2: Tensor) -> tuple[Tensor, Tensor]:
    """Gram matrices of the normal operator PᵀP(X) = (P1ᵀP1)·X·(P2P2ᵀ): (B×C×h×h, B×C×w×w)."""
    return p1.transpose(-1, -2) @ p1, p2 @ p2.transpose(-1, -2)


def kron_step(x: Tensor, f: Tensor, gram1: Tensor, gram2: Tensor, r: Tensor, eta: Tensor) -> Tensor:
    """The RESM gradient step X − η·(PᵀP(F) + R) with PᵀP(F) = G1·F·G2 (docs/model.md, RESM).

    x, f, r: B×C×h×w; gram1: B×C×h×h, gram2: B×C×w×w (from `kron_gram`); eta: 0-dim or 1-element.
    """
    return x - eta.reshape(()).to(x.dtype) * (gram1 @ f @ gram2 + r)


def kron_step_backward(
    grad_out: Tensor, f: Tensor, gram1: Tensor, gram2: Tensor, r: Tensor, eta: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(dx, df, dgram1, dgram2, dr, deta) of `kron_step`."""
    e = eta.reshape(()).to(grad_out.dtype)
    v = gram1 @ f @ gram2 + r
    df, dg1, dg2 = kron_apply_backward(grad_out, f, gram1, gram2)
    deta = -(grad_out * v).sum().reshape(eta.shape).to(eta.dtype)
    return grad_out.clone(), -e * df, -e * dg1, -e * dg2, -e * grad_out, deta


# --------------------------------------------------------------------------------------------------------
# Frequency loss (docs/model.md), FSNet form: L1 between the stacked (Re, Im) parts of the two 2-D spectra.
# --------------------------------------------------------------------------------------------------------


def fft_l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """mean over the 2·B·C·H·W numbers (Re and Im) of |F(pred) − F(target)|; F = unnormalised fft2.

    pred, target: B×C×H×W (any float dtype) → 0-dim float32 (float64 for float64 input).
    """
    acc = torch.float64 if pred.dtype == torch.float64 else torch.float32
    fp = torch.fft.fft2(pred.to(acc))
    ft = torch.fft.fft2(target.to(acc))
    return F.l1_loss(torch.stack((fp.real, fp.imag), -1), torch.stack((ft.real, ft.imag), -1))


def fft_l1_loss_backward(grad_loss: Tensor, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(dpred, dtarget) of `fft_l1_loss`.

    With D = F(d), d = pred − target, L = Σ_k (|Re D_k| + |Im D_k|) / (2N):
    ∂L/∂d_n = Σ_k (sgn Re D_k·cos − sgn Im D_k·sin)(2π k·n) / (2N) = Re(HW·ifft2(sgn Re D + i·sgn Im D))/(2N).
    """
    acc = torch.float64 if pred.dtype == torch.float64 else torch.float32
    d = pred.to(acc) - target.to(acc)
    spec = torch.fft.fft2(d)
    signs = torch.complex(torch.sign(spec.real), torch.sign(spec.imag))
    hw = d.shape[-1] * d.shape[-2]
    grad = torch.fft.ifft2(signs).real * (hw / (2 * d.numel())) * grad_loss.to(acc)
    return grad.to(pred.dtype), (-grad).to(target.dtype)


def fft_l1_loss_rfft(pred: Tensor, target: Tensor) -> Tensor:
    """The same loss from one rfft2 of the difference: the half spectrum with mirrored columns counted twice.

    A real signal's spectrum is Hermitian, D[k, l] = conj(D[−k, −l]), so |Re| and |Im| of the missing columns
    equal those of their mirror twins: columns 1 … ⌈W/2⌉−1 of the rfft2 output count twice, column 0 and
    (for even W) column W/2 once.
    """
    acc = torch.float64 if pred.dtype == torch.float64 else torch.float32
    d = pred.to(acc) - target.to(acc)
    half = torch.fft.rfft2(d)
    w = d.shape[-1]
    weight = torch.full((half.shape[-1],), 2.0, dtype=acc, device=d.device)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    total = ((half.real.abs() + half.imag.abs()) * weight).sum()
    return total / (2 * d.numel())


# --------------------------------------------------------------------------------------------------------
# The `reference` backend: these functions as a backend table (docs/ops.md). The loss keeps no state for its
# backward (it recomputes the spectrum), so its `saved` is an empty tensor.
# --------------------------------------------------------------------------------------------------------


def _fft_l1_loss_forward(pred: Tensor, target: Tensor, keep: bool) -> tuple[Tensor, Tensor]:
    return fft_l1_loss(pred, target), pred.new_empty((0,))


def _fft_l1_loss_backward(grad_loss: Tensor, pred: Tensor, target: Tensor, saved: Tensor) -> tuple[Tensor, Tensor]:
    return fft_l1_loss_backward(grad_loss, pred, target)


TABLE = {
    "explainable_attention": {"forward": explainable_attention, "backward": explainable_attention_backward},
    "modulated_conv": {"forward": modulated_conv, "backward": modulated_conv_backward},
    "kron_apply": {"forward": kron_apply, "backward": kron_apply_backward},
    "kron_step": {"forward": kron_step, "backward": kron_step_backward},
    "fft_l1_loss": {"forward": _fft_l1_loss_forward, "backward": _fft_l1_loss_backward},
}

__all__ = [
    "adaptive_pool_matrix",
    "explainable_attention",
    "explainable_attention_backward",
    "explainable_mask",
    "modulated_conv",
    "modulated_conv_backward",
    "kron_apply",
    "kron_apply_backward",
    "kron_gram",
    "kron_step",
    "kron_step_backward",
    "fft_l1_loss",
    "fft_l1_loss_backward",
    "fft_l1_loss_rfft",
]
