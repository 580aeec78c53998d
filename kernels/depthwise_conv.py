"""Triton kernels of the depthwise modulated convolution (groups = Cin = Cout), used by modulated_conv.py.

`_dw_conv_kernel` is direct, a taps × pixels tile per program: out[b,c,p] = Σ_t Wt[c,t]·A[b,c,t]·src[b,c,p±t]
(+ bias[c]); the forward with +t, and dx from dy with FLIP (−t). `_dw_grad_kernel`, one program per (b, c)
plane: G[t] = Σ_q x[q+t]·dy[q] gives dA = Wt[c]·G, the dWt partial A[b,c]·G and Σ dy for dbias; the partials
are summed over the batch in a fixed order (kernels/_launch.sum_rows). float32 accumulation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from interir.kernels._launch import new_output, pow2, sum_rows
from interir.kernels._tuning import Tuning


@dataclass(frozen=True)
class PlaneConfig:
    """Tile of the depthwise kernels: BLOCK pixels of one (b, c) plane per program step."""

    BLOCK: int
    num_warps: int = 4

    def __str__(self) -> str:
        return f"B{self.BLOCK}_w{self.num_warps}"

TUNING = Tuning(
    "depthwise",
    (PlaneConfig(256, num_warps=4), PlaneConfig(32, num_warps=2), PlaneConfig(1024, num_warps=8)),
    heuristic=lambda key: TUNING.candidates[2] if key[0] >= 16384 else TUNING.candidates[0],
)


def is_depthwise(cin: int, cout: int, groups: int) -> bool:
    return groups > 1 and cin == groups and cout == groups


@triton.jit
def _taps(KS: tl.constexpr, KKP: tl.constexpr):
    """The k² taps padded to KKP: (tap index, valid, row offset, column offset) of a k×k 'same' kernel."""
    tt = tl.arange(0, KKP)
    return tt, tt < KS * KS, tt // KS - KS // 2, tt % KS - KS // 2


@triton.jit
def _dw_conv_kernel(src_ptr, w_ptr, a_ptr, bias_ptr, out_ptr, C, H, W, NUM_P,
                    KS: tl.constexpr, KKP: tl.constexpr, FLIP: tl.constexpr, HAS_BIAS: tl.constexpr,
                    BLOCK: tl.constexpr):
    """Depthwise: out[b,c,p] = Σ_t Wt[c,t]·A[b,c,t]·src[b,c,p ± t] (+ bias[c]); FLIP (−t) gives dx from dy."""
    KK = KS * KS
    pid = tl.program_id(0)
    pid_p = pid % NUM_P
    bc = pid // NUM_P
    c = bc % C
    HW = H * W
    tt, t_ok, dh, dw = _taps(KS, KKP)
    if FLIP:
        dh = -dh
        dw = -dw
    scale = tl.load(w_ptr + c * KK + tt, mask=t_ok, other=0.0).to(tl.float32)
    scale = scale * tl.load(a_ptr + bc.to(tl.int64) * KK + tt, mask=t_ok, other=0.0).to(tl.float32)
    p = pid_p * BLOCK + tl.arange(0, BLOCK)
    p_ok = p < HW
    hh = (p // W)[None, :] + dh[:, None]
    ww = (p % W)[None, :] + dw[:, None]
    ok = t_ok[:, None] & p_ok[None, :] & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
    base = bc.to(tl.int64) * HW
    v = tl.load(src_ptr + base + hh * W + ww, mask=ok, other=0.0).to(tl.float32)
    acc = tl.sum(v * scale[:, None], axis=0)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + c + p * 0).to(tl.float32)
    tl.store(out_ptr + base + p, acc.to(out_ptr.dtype.element_ty), mask=p_ok)


@triton.jit
def _dw_grad_kernel(x_ptr, dy_ptr, w_ptr, a_ptr, da_ptr, dwp_ptr, dbp_ptr, C, H, W,
                    KS: tl.constexpr, KKP: tl.constexpr, BLOCK: tl.constexpr):
    """Depthwise, one (b, c) plane: G[t] = Σ_q x[q+t]·dy[q]; dA = Wt[c]·G, dWt partial = A[b,c]·G, Σ dy."""
    KK = KS * KS
    bc = tl.program_id(0)
    c = bc % C
    HW = H * W
    tt, t_ok, dh, dw = _taps(KS, KKP)
    base = bc.to(tl.int64) * HW
    offs = tl.arange(0, BLOCK)
    gacc = tl.zeros([KKP, BLOCK], dtype=tl.float32)
    dbacc = tl.zeros([BLOCK], dtype=tl.float32)
    for p0 in range(0, HW, BLOCK):
        p = p0 + offs
        p_ok = p < HW
        hh = (p // W)[None, :] + dh[:, None]
        ww = (p % W)[None, :] + dw[:, None]
        ok = t_ok[:, None] & p_ok[None, :] & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
        xv = tl.load(x_ptr + base + hh * W + ww, mask=ok, other=0.0).to(tl.float32)
        dyv = tl.load(dy_ptr + base + p, mask=p_ok, other=0.0).to(tl.float32)
        gacc += xv * dyv[None, :]
        dbacc += dyv
    gsum = tl.sum(gacc, axis=1)
    wv = tl.load(w_ptr + c * KK + tt, mask=t_ok, other=0.0).to(tl.float32)
    av = tl.load(a_ptr + bc.to(tl.int64) * KK + tt, mask=t_ok, other=0.0).to(tl.float32)
    tl.store(da_ptr + bc.to(tl.int64) * KK + tt, wv * gsum, mask=t_ok)
    tl.store(dwp_ptr + bc.to(tl.int64) * KK + tt, av * gsum, mask=t_ok)
    tl.store(dbp_ptr + bc + offs * 0, tl.sum(dbacc, axis=0) + offs * 0.0, mask=offs == 0)


def depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, attn: torch.Tensor,
                   y: torch.Tensor, config=None) -> torch.Tensor:
    """y[b,c] = Σ_t Wt[c,t]·A[b,c,t]·x[b,c,·+t] (+ bias[c]) into the allocated y (B×C×H×W, x's dtype)."""
    b, c, h, w = x.shape
    k = weight.shape[-1]
    hw = h * w
    wf = weight.contiguous()
    has_bias = bias is not None
    bias_arg = bias.contiguous() if has_bias else y

    def launch(cfg):
        num_p = triton.cdiv(hw, cfg.BLOCK)
        _dw_conv_kernel[(num_p * b * c,)](x, wf, attn, bias_arg, y, c, h, w, num_p, KS=k, KKP=pow2(k * k, 2),
                                          FLIP=False, HAS_BIAS=has_bias, BLOCK=cfg.BLOCK, num_warps=cfg.num_warps)
        return y

    return TUNING.run((hw, k), config, x.device, launch)


def depthwise_conv_backward(dy: torch.Tensor, x: torch.Tensor, wx: torch.Tensor, attn: torch.Tensor,
                            dx: torch.Tensor, dweight: torch.Tensor, dattn: torch.Tensor, dbias: torch.Tensor,
                            config_dx=None, config_dwa=None) -> None:
    """Fill the allocated dx, dweight, dattn, dbias of the depthwise conv given dy (x's dtype) and A."""
    b, c, h, w = x.shape
    k = wx.shape[-1]
    kk, hw, dev = k * k, h * w, x.device
    dwp = new_output((b, c, kk), torch.float32, dev)
    dbp = new_output((b, c), torch.float32, dev)
    da32 = dattn if attn.dtype == torch.float32 else new_output(attn.shape, torch.float32, dev)

    def launch_dx(cfg):
        num_p = triton.cdiv(hw, cfg.BLOCK)
        _dw_conv_kernel[(num_p * b * c,)](dy, wx, attn, dy, dx, c, h, w, num_p, KS=k, KKP=pow2(kk, 2), FLIP=True,
                                          HAS_BIAS=False, BLOCK=cfg.BLOCK, num_warps=cfg.num_warps)
        return dx

    def launch_grad(cfg):
        _dw_grad_kernel[(b * c,)](x, dy, wx, attn, da32, dwp, dbp, c, h, w, KS=k, KKP=pow2(kk, 2),
                                  BLOCK=cfg.BLOCK, num_warps=cfg.num_warps)
        return dwp

    TUNING.run((hw, k), config_dx, dev, launch_dx)
    TUNING.run((hw, k), config_dwa, dev, launch_grad)
    if da32 is not dattn:
        dattn.copy_(da32)
    sum_rows(dwp, dweight)
    sum_rows(dbp, dbias)
