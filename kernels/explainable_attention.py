"""Triton kernels of the explainable convolution's attention (docs/model.md, "ExplainableConv").

Forward, one pass over x (`_attn_fwd_kernel`, PL (b, c) planes per program, BP pixels per step):
    m = 1[(x − θ)/τ > 0];  counts[plane, t] = Σ_p m[plane, p]·M[p, t], one tl.dot per step with 0/1 float16
    operands (exact integer counts on every device), where M[p, t] = 1 if pixel p lies in bin t = (i, j);
    p = counts / bin area;  A = k²·softmax(p) over the k² taps (padded to ≥ 16).  Bins are PyTorch's
    adaptive bins [⌊i·n/k⌋, ⌈(i+1)·n/k⌉), which may overlap.
Backward (`_attn_bwd_kernel`, same grid): dp = k²·s⊙(g − Σ g·s), dmask = (dp / area)·Mᵀ (IEEE fp32 tl.dot),
dx = dmask·σ'(z)/τ, and the program's Σ dx to a partials buffer; dθ = −Σ partials, summed by one program in
a fixed order (deterministic, no atomics). float32 math whatever x's dtype; the result A is float32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from interir.kernels._launch import (DTYPES, INT32_MAX, device_of, new_output, pow2, sum_partials,
                                     tensors_reason)
from interir.kernels._tuning import Tuning

MAX_K = 16


@dataclass(frozen=True)
class AttnConfig:
    """Tile of the attention kernels: PL planes (b, c) per program (≥ 16), BP pixels per step (≥ 16)."""

    PL: int
    BP: int
    num_warps: int = 4

    def __str__(self) -> str:
        return f"PL{self.PL}_BP{self.BP}_w{self.num_warps}"

# Candidates; tests run each one alone. The first is the interpreter's (few, wide programs).
TUNING = Tuning(
    "attention",
    (
        AttnConfig(32, 256, num_warps=4),
        AttnConfig(16, 16, num_warps=2),
        AttnConfig(16, 128, num_warps=4),
        AttnConfig(32, 128, num_warps=8),
    ),
    heuristic=lambda key: TUNING.candidates[2],
)


@triton.jit
def _bin_membership(p, p_ok, tt, H, W, K: tl.constexpr):
    """Mt[t, p] = 1 if pixel p (flattened r·W + w) lies in adaptive bin t = (i, j) of an H×W map, k×k bins.

    Bin (i, j) covers rows [⌊i·H/k⌋, ⌈(i+1)·H/k⌉) and columns [⌊j·W/k⌋, ⌈(j+1)·W/k⌉) (PyTorch's bins).
    Returns a KKP×BLOCK_P boolean tile; padding taps (t ≥ k²) and pixels (not p_ok) are 0.
    """
    bi = tt // K
    bj = tt % K
    r_lo = (bi * H) // K
    r_hi = ((bi + 1) * H + K - 1) // K
    c_lo = (bj * W) // K
    c_hi = ((bj + 1) * W + K - 1) // K
    r = (p // W)[None, :]
    c = (p % W)[None, :]
    inside = (r >= r_lo[:, None]) & (r < r_hi[:, None]) & (c >= c_lo[:, None]) & (c < c_hi[:, None])
    return inside & (tt < K * K)[:, None] & p_ok[None, :]


@triton.jit
def _bin_area(tt, H, W, K: tl.constexpr):
    bi = tt // K
    bj = tt % K
    rows = ((bi + 1) * H + K - 1) // K - (bi * H) // K
    cols = ((bj + 1) * W + K - 1) // K - (bj * W) // K
    return (rows * cols).to(tl.float32)


@triton.jit
def _attn_fwd_kernel(x_ptr, theta_ptr, out_ptr, NPLANES, H, W, tau,
                     K: tl.constexpr, KKP: tl.constexpr, PL: tl.constexpr, BP: tl.constexpr):
    """PL (b, c) planes per program: counts[plane, t] = Σ_p m[plane, p]·M[p, t] (tl.dot of 0/1 float16
    operands: exact integer counts), then A = k²·softmax(counts / area) over the k² taps."""
    pid = tl.program_id(0)
    planes = pid * PL + tl.arange(0, PL)
    pl_ok = planes < NPLANES
    HW = H * W
    rows = planes.to(tl.int64) * HW
    theta = tl.load(theta_ptr).to(tl.float32)
    tt = tl.arange(0, KKP)
    p0 = tl.arange(0, BP)
    counts = tl.zeros([PL, KKP], dtype=tl.float32)
    nan_seen = tl.zeros([PL], dtype=tl.int1)  # a NaN pixel makes the plane's attention NaN, as in the reference
    for start in range(0, HW, BP):
        p = start + p0
        p_ok = p < HW
        ok = pl_ok[:, None] & p_ok[None, :]
        xv = tl.load(x_ptr + rows[:, None] + p[None, :], mask=ok, other=0.0).to(tl.float32)
        z = (xv - theta) / tau
        m = ((z > 0) & ok).to(tl.float16)
        nan_seen = nan_seen | (tl.max(((z != z) & ok).to(tl.int32), axis=1) > 0)
        member_t = _bin_membership(p, p_ok, tt, H, W, K).to(tl.float16)  # KKP×BP
        counts += tl.dot(m, tl.trans(member_t))
    t_ok = tt < K * K
    pooled = tl.where(t_ok[None, :], counts / _bin_area(tt, H, W, K)[None, :], float("-inf"))
    p_max = tl.max(pooled, axis=1)
    e = tl.where(t_ok[None, :], tl.exp(pooled - p_max[:, None]), 0.0)
    attn = e / tl.sum(e, axis=1)[:, None] * (K * K)
    attn = tl.where(nan_seen[:, None], float("nan"), attn)
    tl.store(out_ptr + planes.to(tl.int64)[:, None] * (K * K) + tt[None, :], attn,
             mask=pl_ok[:, None] & t_ok[None, :])


@triton.jit
def _attn_bwd_kernel(g_ptr, a_ptr, x_ptr, theta_ptr, dx_ptr, part_ptr, NPLANES, H, W, tau,
                     K: tl.constexpr, KKP: tl.constexpr, PL: tl.constexpr, BP: tl.constexpr):
    """PL planes per program: dp = k²·s⊙(g − Σ g·s); dmask[plane, p] = Σ_t dp[plane, t]/area[t]·M[p, t]
    (IEEE fp32 dot); dx = dmask·σ'(z)/τ; partial[program] = Σ dx over its planes."""
    pid = tl.program_id(0)
    planes = pid * PL + tl.arange(0, PL)
    pl_ok = planes < NPLANES
    tt = tl.arange(0, KKP)
    t_ok = tt < K * K
    pt_ok = pl_ok[:, None] & t_ok[None, :]
    taps = planes.to(tl.int64)[:, None] * (K * K) + tt[None, :]
    g = tl.load(g_ptr + taps, mask=pt_ok, other=0.0).to(tl.float32)
    s = tl.load(a_ptr + taps, mask=pt_ok, other=0.0).to(tl.float32) / (K * K)  # the softmax itself
    gs = tl.sum(g * s, axis=1)
    dp = (K * K) * s * (g - gs[:, None])
    d = tl.where(pt_ok, dp / _bin_area(tt, H, W, K)[None, :], 0.0)  # adjoint of the average
    theta = tl.load(theta_ptr).to(tl.float32)
    HW = H * W
    rows = planes.to(tl.int64) * HW
    p0 = tl.arange(0, BP)
    acc = tl.zeros([PL, BP], dtype=tl.float32)
    for start in range(0, HW, BP):
        p = start + p0
        p_ok = p < HW
        ok = pl_ok[:, None] & p_ok[None, :]
        member_t = _bin_membership(p, p_ok, tt, H, W, K).to(tl.float32)  # KKP×BP
        dm = tl.dot(d, member_t, input_precision="ieee")  # PL×BP: dL/dmask
        offs = rows[:, None] + p[None, :]
        xv = tl.load(x_ptr + offs, mask=ok, other=0.0).to(tl.float32)
        sig = 1.0 / (1.0 + tl.exp(-((xv - theta) / tau)))
        dz = dm * sig * (1.0 - sig) / tau
        tl.store(dx_ptr + offs, dz.to(dx_ptr.dtype.element_ty), mask=ok)
        acc += tl.where(ok, dz, 0.0)
    tl.store(part_ptr + pid, tl.sum(tl.sum(acc, axis=1), axis=0))


def _attn_grid(nplanes: int, hw: int, cfg: AttnConfig) -> tuple[int, int]:
    """(programs, pixel block) for a config: pixel blocks no wider than the map needs (≥ 16 for tl.dot)."""
    bp = min(cfg.BP, max(16, pow2(hw)))
    return triton.cdiv(nplanes, cfg.PL), bp


def explainable_attention(x: torch.Tensor, theta: torch.Tensor, kernel_size: int, tau: float = 0.5, *,
                          config=None) -> torch.Tensor:
    """A = k²·softmax(adaptive_avg_pool(1[x > θ], k×k)): B×Cin×H×W → B×Cin×k×k float32."""
    x = x.contiguous()
    b, c, h, w = x.shape
    k = int(kernel_size)
    out = new_output((b, c, k, k), torch.float32, x.device)
    if b * c == 0:
        return out
    theta32 = theta.detach().reshape(1).to(device=x.device, dtype=torch.float32)

    def launch(cfg):
        programs, bp = _attn_grid(b * c, h * w, cfg)
        _attn_fwd_kernel[(programs,)](x, theta32, out, b * c, h, w, float(tau), K=k, KKP=pow2(k * k, 16),
                                      PL=cfg.PL, BP=bp, num_warps=cfg.num_warps)
        return out

    return TUNING.run((b * c, h * w, k), config, x.device, launch)


def explainable_attention_backward(grad_attn: torch.Tensor, x: torch.Tensor, theta: torch.Tensor,
                                   attn: torch.Tensor, tau: float = 0.5, *, config=None):
    """(dx like x, dθ like theta) of `explainable_attention` given dA and A (the straight-through surrogate of
    docs/model.md)."""
    x = x.contiguous()
    b, c, h, w = x.shape
    k = attn.shape[-1]
    grad_attn = grad_attn.contiguous()
    attn = attn.contiguous()
    dx = new_output(x.shape, x.dtype, x.device)
    dtheta = new_output(theta.shape, theta.dtype, theta.device)
    if b * c == 0:
        return dx, dtheta.zero_()
    theta32 = theta.detach().reshape(1).to(device=x.device, dtype=torch.float32)
    state = {}

    def launch(cfg):
        programs, bp = _attn_grid(b * c, h * w, cfg)
        partials = new_output((programs,), torch.float32, x.device)
        _attn_bwd_kernel[(programs,)](grad_attn, attn, x, theta32, dx, partials, b * c, h, w, float(tau),
                                      K=k, KKP=pow2(k * k, 16), PL=cfg.PL, BP=bp, num_warps=cfg.num_warps)
        state["partials"] = partials
        return dx

    TUNING.run((b * c, h * w, k), config, x.device, launch)
    with device_of(x.device):
        sum_partials(state["partials"], dtheta, -1.0)
    return dx, dtheta


def why_not(x: torch.Tensor, theta: torch.Tensor, kernel_size: int, tau: float) -> str | None:
    """None if the kernels can compute explainable_attention(x, θ, k, τ), else a one-line reason."""
    reason = tensors_reason("triton explainable_attention", [x], DTYPES)
    if reason:
        return reason
    if theta.device != x.device:
        return f"triton explainable_attention needs theta on {x.device}, got {theta.device}"
    if not 1 <= kernel_size <= MAX_K:
        return f"triton explainable_attention takes kernel_size 1…{MAX_K}, got {kernel_size}"
    if x.shape[2] * x.shape[3] == 0:
        return "triton explainable_attention needs a non-empty H×W map"
    if math.prod(x.shape[1:]) > INT32_MAX:
        return "triton explainable_attention: one sample has more than 2³¹ elements"
    return None
