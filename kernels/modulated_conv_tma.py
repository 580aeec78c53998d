"""The modulated convolution's three passes with tensor-descriptor loads: tuning candidates of conv_fwd, conv_dx
and conv_dwa.

y[b,o,q] = Σ_{c,t} Wt[o,c,t]·A[b,c,t]·x[b,c,q+t] + bias[o], as `_conv_fwd_kernel` of modulated_conv.py, with
the activations read differently (docs/gpu.md, "Traffic of the convolutions"):
  * x is copied once into a channels-last layout with its channels zero-padded to the reduction block,
    B×H×W×Cp, so that a tap's input tile is one box of a 4-D tensor descriptor: 1×BH×BW×BK;
  * each program owns a BH×BW patch of pixels × BN output channels; for every (channel block, tap) it loads the
    tap-shifted box through the descriptor. On sm_90 and later that is an asynchronous TMA copy into shared
    memory (UTMALDG in the SASS, pipelined by Triton); the image border is zero-filled by the copy, not masked.
    Elsewhere (sm_80, the interpreter) Triton lowers it to ordinary loads;
  * A[b, c-block, t] scales the box in float32, rounded to x's dtype, as in the implicit-GEMM kernel.
The input gradient dx[b,c,p] = Σ_{t,o} dy[b,o,p−t]·Wt[o,c,t]·A[b,c,t] reads dy the same way (boxes of a
channels-last dy shifted by −t); the A scale goes on the weight tile, per input channel, as in `_conv_dx_kernel`.
The weight-side gradients G_b[c,o] = Σ_q x[b,c,q+t]·dy[b,o,q] take, per BH×BW patch of pixels q, one x box shifted
by t and one dy box, and multiply the transposed x box by the dy box; the rest is `_conv_dwa_kernel`'s (the same
partials, summed in the same fixed order by the caller).

groups = 1 only (the explainable conv of InterIR); other groupings take the implicit-GEMM kernel. Not the
default: it becomes one when a GPU measures it faster (INTERIR_TRITON_AUTOTUNE=1 already times it among the
candidates). Determinism: one program per output element, a fixed loop order.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

try:  # Triton ≥ 3.3
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # pragma: no cover  (an older Triton: the candidates fall back to the implicit GEMM)
    TensorDescriptor = None


@dataclass(frozen=True)
class TmaConfig:
    """BH×BW pixels × BN output channels per program, BK input channels per box (BK·itemsize ≥ 16 bytes)."""

    BH: int
    BW: int
    BN: int
    BK: int
    num_warps: int = 4
    num_stages: int = 2

    def __str__(self) -> str:
        return f"tma_BH{self.BH}_BW{self.BW}_BN{self.BN}_BK{self.BK}_w{self.num_warps}_s{self.num_stages}"


# Both compile without a spill for sm_90 and sm_120 in bfloat16, float32 with TF32 and IEEE dots (Triton 3.9),
# and the smaller also for sm_80.
CANDIDATES = (TmaConfig(8, 16, 64, 32, num_warps=4, num_stages=2), TmaConfig(8, 8, 32, 32, num_warps=4, num_stages=2))
# conv_dwa: BH×BW pixels per step, BK in-channels × BN out-channels per program.
DWA_CANDIDATES = (TmaConfig(4, 8, 32, 32, num_warps=4, num_stages=2), TmaConfig(8, 8, 32, 32, num_warps=4, num_stages=2))


def applies(groups: int) -> bool:
    """Whether the descriptor kernel can take this convolution (else the implicit GEMM does)."""
    return TensorDescriptor is not None and groups == 1


@triton.jit
def _patch_tile(H, W, NUM_TW, NUM_T, NUM_N, BH: tl.constexpr, BW: tl.constexpr):
    """This program's tile of a patch grid (sample, BH×BW pixel patch, channel block; channel block fastest):
    (channel block, sample, patch row, patch column, pixel rows and columns of its BH·BW pixels, in-image mask)."""
    pid = tl.program_id(0)
    pid_n = pid % NUM_N
    rest = pid // NUM_N
    tile = rest % NUM_T
    h0 = (tile // NUM_TW) * BH
    w0 = (tile % NUM_TW) * BW
    offs_m = tl.arange(0, BH * BW)
    ph = h0 + offs_m // BW
    pw = w0 + offs_m % BW
    return pid_n, rest // NUM_T, h0, w0, ph, pw, (ph < H) & (pw < W)


@triton.jit
def _conv_fwd_tma_kernel(x_desc, w_ptr, a_ptr, bias_ptr, y_ptr, Cin, Cout, H, W, CP, NUM_TW, NUM_T, NUM_N,
                         KS: tl.constexpr, HAS_BIAS: tl.constexpr, IS_FP32: tl.constexpr, PREC: tl.constexpr,
                         BH: tl.constexpr, BW: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """y tile (BH·BW pixels × BN out-channels of one sample) = Σ_{c-block, t} (A ⊙ box_t) · Wt_t.

    x_desc: B×H×W×CP channels-last (channels ≥ Cin are zero), boxes 1×BH×BW×BK; w: k×k×CP×Cout (tap-major,
    zero rows ≥ Cin); a: B×Cin×k×k (fp32); y: B×Cout×H×W.
    """
    KK: tl.constexpr = KS * KS
    PAD: tl.constexpr = KS // 2
    BM: tl.constexpr = BH * BW
    pid_n, bb, h0, w0, ph, pw, m_ok = _patch_tile(H, W, NUM_TW, NUM_T, NUM_N, BH, BW)
    offs_n = pid_n * BN + tl.arange(0, BN)
    n_ok = offs_n < Cout
    offs_k = tl.arange(0, BK)
    a_base = a_ptr + bb.to(tl.int64) * Cin * KK
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for c0 in range(0, CP, BK):
        cc = c0 + offs_k
        c_ok = cc < Cin
        for t in range(KK):
            xt = x_desc.load([bb, h0 + t // KS - PAD, w0 + t % KS - PAD, c0]).reshape(BM, BK)
            av = tl.load(a_base + cc * KK + t, mask=c_ok, other=0.0).to(tl.float32)
            xs = (xt.to(tl.float32) * av[None, :]).to(xt.dtype)  # A scales the input operand
            wt = tl.load(w_ptr + (t * CP + cc)[:, None] * Cout + offs_n[None, :], mask=n_ok[None, :], other=0.0)
            if IS_FP32:
                acc = tl.dot(xs, wt, acc, input_precision=PREC)
            else:
                acc = tl.dot(xs, wt, acc)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    y_base = y_ptr + bb.to(tl.int64) * Cout * H * W
    tl.store(y_base + offs_n[None, :] * H * W + (ph * W + pw)[:, None], acc.to(y_ptr.dtype.element_ty),
             mask=m_ok[:, None] & n_ok[None, :])


@triton.jit
def _conv_dx_tma_kernel(dy_desc, w_ptr, a_ptr, dx_ptr, Cin, Cout, H, W, OP, NUM_TW, NUM_T, NUM_N,
                        KS: tl.constexpr, IS_FP32: tl.constexpr, PREC: tl.constexpr,
                        BH: tl.constexpr, BW: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """dx tile (BH·BW pixels × BN in-channels of one sample) = Σ_{o-block, t} box_{−t}(dy) · (Wt_t ⊙ A[b, :, t]).

    dy_desc: B×H×W×OP channels-last (channels ≥ Cout are zero), boxes 1×BH×BW×BK; w: k×k×OP×Cin (tap-major,
    zero rows ≥ Cout); a: B×Cin×k×k (fp32); dx: B×Cin×H×W.
    """
    KK: tl.constexpr = KS * KS
    PAD: tl.constexpr = KS // 2
    BM: tl.constexpr = BH * BW
    pid_n, bb, h0, w0, ph, pw, m_ok = _patch_tile(H, W, NUM_TW, NUM_T, NUM_N, BH, BW)
    offs_n = pid_n * BN + tl.arange(0, BN)  # input channels
    n_ok = offs_n < Cin
    offs_k = tl.arange(0, BK)
    a_base = a_ptr + bb.to(tl.int64) * Cin * KK
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for o0 in range(0, OP, BK):
        oo = o0 + offs_k
        for t in range(KK):
            dyt = dy_desc.load([bb, h0 - (t // KS - PAD), w0 - (t % KS - PAD), o0]).reshape(BM, BK)
            av = tl.load(a_base + offs_n * KK + t, mask=n_ok, other=0.0).to(tl.float32)
            wt = tl.load(w_ptr + (t * OP + oo)[:, None] * Cin + offs_n[None, :], mask=n_ok[None, :], other=0.0)
            ws = (wt.to(tl.float32) * av[None, :]).to(dyt.dtype)  # per-(b, c, t) scaling
            if IS_FP32:
                acc = tl.dot(dyt, ws, acc, input_precision=PREC)
            else:
                acc = tl.dot(dyt, ws, acc)
    dx_base = dx_ptr + bb.to(tl.int64) * Cin * H * W
    tl.store(dx_base + offs_n[None, :] * H * W + (ph * W + pw)[:, None], acc.to(dx_ptr.dtype.element_ty),
             mask=m_ok[:, None] & n_ok[None, :])


@triton.jit
def _conv_dwa_tma_kernel(x_desc, dy_desc, w_ptr, a_ptr, dwp_ptr, dap_ptr, B, Cin, Cout, H, W, B_PER, NUM_C, NUM_O,
                         NUM_QW, NUM_Q, KS: tl.constexpr, IS_FP32: tl.constexpr, PREC: tl.constexpr,
                         BH: tl.constexpr, BW: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """Weight-side gradients of one tap t for BK in-channels × BN out-channels over the samples of batch chunk s:
    G_b = Σ_q x[b, c, q+t]·dy[b, o, q] (a BH×BW patch of q per step); dap[o-block, b, c, t] = Σ_o Wt[o,c,t]·G_b,
    dwp[s, o, c, t] = Σ_{b in chunk} A[b,c,t]·G_b. x_desc: B×H×W×CP boxes 1×BH×BW×BK; dy_desc: B×H×W×OP boxes
    1×BH×BW×BN (channels-last, zero-padded); w: Cout×Cin×k×k; a: B×Cin×k×k (fp32); partials float32."""
    KK: tl.constexpr = KS * KS
    PAD: tl.constexpr = KS // 2
    BQ: tl.constexpr = BH * BW
    pid = tl.program_id(0)
    pid_o = pid % NUM_O
    rest = pid // NUM_O
    pid_c = rest % NUM_C
    rest = rest // NUM_C
    t = rest % KK
    s = rest // KK
    dh = t // KS - PAD
    dw = t % KS - PAD
    offs_c = pid_c * BK + tl.arange(0, BK)
    c_ok = offs_c < Cin
    offs_o = pid_o * BN + tl.arange(0, BN)
    o_ok = offs_o < Cout
    co_ok = c_ok[:, None] & o_ok[None, :]
    wt = tl.load(w_ptr + (offs_o[None, :] * Cin + offs_c[:, None]) * KK + t, mask=co_ok, other=0.0).to(tl.float32)
    dw_acc = tl.zeros([BK, BN], dtype=tl.float32)
    b_lo = s * B_PER
    b_hi = tl.minimum(b_lo + B_PER, B)
    for i in range(0, b_hi - b_lo):
        bb = b_lo + i
        gacc = tl.zeros([BK, BN], dtype=tl.float32)
        for qi in range(0, NUM_Q):
            qh0 = (qi // NUM_QW) * BH
            qw0 = (qi % NUM_QW) * BW
            xt = x_desc.load([bb, qh0 + dh, qw0 + dw, pid_c * BK]).reshape(BQ, BK)
            dyt = dy_desc.load([bb, qh0, qw0, pid_o * BN]).reshape(BQ, BN)
            if IS_FP32:
                gacc = tl.dot(tl.trans(xt), dyt, gacc, input_precision=PREC)
            else:
                gacc = tl.dot(tl.trans(xt), dyt, gacc)
        b64 = bb.to(tl.int64)
        av = tl.load(a_ptr + (b64 * Cin + offs_c) * KK + t, mask=c_ok, other=0.0).to(tl.float32)
        dw_acc += gacc * av[:, None]
        da = tl.sum(gacc * wt, axis=1)
        tl.store(dap_ptr + ((pid_o * B + b64) * Cin + offs_c) * KK + t, da, mask=c_ok)
    s64 = s.to(tl.int64)
    tl.store(dwp_ptr + ((s64 * Cout + offs_o[None, :]) * Cin + offs_c[:, None]) * KK + t, dw_acc, mask=co_ok)


def channels_last_padded(x: torch.Tensor, cp: int) -> torch.Tensor:
    """B×C×H×W → B×H×W×cp (channels ≥ C zero): the layout the descriptor reads."""
    b, c, h, w = x.shape
    out = x.new_empty((b, h, w, cp))
    out[..., c:] = 0
    out[..., :c] = x.permute(0, 2, 3, 1)
    return out


def modulated_conv_tma(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, attn: torch.Tensor,
                       y: torch.Tensor, cfg: TmaConfig, prec: str) -> torch.Tensor:
    """Fill y (B×Cout×H×W) with the modulated conv of x (contiguous, groups = 1) by the descriptor kernel."""
    b, cin, h, w = x.shape
    cout, _, k, _ = weight.shape
    cp = triton.cdiv(cin, cfg.BK) * cfg.BK
    xcl = channels_last_padded(x, cp)
    wt = x.new_empty((k, k, cp, cout))
    wt[:, :, cin:] = 0
    wt[:, :, :cin] = weight.to(x.dtype).permute(2, 3, 1, 0)
    desc = TensorDescriptor(xcl, list(xcl.shape), list(xcl.stride()), [1, cfg.BH, cfg.BW, cfg.BK])
    num_tw, num_th, num_n = triton.cdiv(w, cfg.BW), triton.cdiv(h, cfg.BH), triton.cdiv(cout, cfg.BN)
    _conv_fwd_tma_kernel[(num_n * num_tw * num_th * b,)](
        desc, wt, attn, bias.contiguous() if bias is not None else y, y, cin, cout, h, w, cp, num_tw, num_tw * num_th, num_n,
        KS=k, HAS_BIAS=bias is not None, IS_FP32=x.dtype == torch.float32, PREC=prec,
        BH=cfg.BH, BW=cfg.BW, BN=cfg.BN, BK=cfg.BK, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return y


def modulated_conv_dx_tma(dy: torch.Tensor, weight: torch.Tensor, attn: torch.Tensor, dx: torch.Tensor,
                          cfg: TmaConfig, prec: str) -> torch.Tensor:
    """Fill dx (B×Cin×H×W) with the input gradient of the modulated conv (groups = 1) given dy (B×Cout×H×W,
    contiguous, x's dtype) by the descriptor kernel; weight in dy's dtype."""
    b, cout, h, w = dy.shape
    cin, k = weight.shape[1], weight.shape[-1]
    op = triton.cdiv(cout, cfg.BK) * cfg.BK
    dycl = channels_last_padded(dy, op)
    wt = dy.new_empty((k, k, op, cin))
    wt[:, :, cout:] = 0
    wt[:, :, :cout] = weight.permute(2, 3, 0, 1)
    desc = TensorDescriptor(dycl, list(dycl.shape), list(dycl.stride()), [1, cfg.BH, cfg.BW, cfg.BK])
    num_tw, num_th, num_n = triton.cdiv(w, cfg.BW), triton.cdiv(h, cfg.BH), triton.cdiv(cin, cfg.BN)
    _conv_dx_tma_kernel[(num_n * num_tw * num_th * b,)](
        desc, wt, attn, dx, cin, cout, h, w, op, num_tw, num_tw * num_th, num_n, KS=k,
        IS_FP32=dy.dtype == torch.float32, PREC=prec, BH=cfg.BH, BW=cfg.BW, BN=cfg.BN, BK=cfg.BK,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return dx


def weight_grad_partials_tma(x: torch.Tensor, dy: torch.Tensor, weight: torch.Tensor, attn: torch.Tensor,
                             dwp: torch.Tensor, dap: torch.Tensor, per: int, cfg: TmaConfig, prec: str) -> None:
    """Fill the partials of `_conv_dwa_kernel` (dwp: chunks×Cout×Cin×k², dap: ⌈Cout/BN⌉×B×Cin×k², float32) by the
    descriptor kernel; `per` samples a chunk. x, dy contiguous in one dtype, groups = 1."""
    b, cin, h, w = x.shape
    cout, k = dy.shape[1], weight.shape[-1]
    kk = k * k
    xcl = channels_last_padded(x, triton.cdiv(cin, cfg.BK) * cfg.BK)
    dycl = channels_last_padded(dy, triton.cdiv(cout, cfg.BN) * cfg.BN)
    x_desc = TensorDescriptor(xcl, list(xcl.shape), list(xcl.stride()), [1, cfg.BH, cfg.BW, cfg.BK])
    dy_desc = TensorDescriptor(dycl, list(dycl.shape), list(dycl.stride()), [1, cfg.BH, cfg.BW, cfg.BN])
    num_c, num_o = triton.cdiv(cin, cfg.BK), triton.cdiv(cout, cfg.BN)
    num_qw = triton.cdiv(w, cfg.BW)
    chunks = dwp.shape[0]
    _conv_dwa_tma_kernel[(chunks * kk * num_c * num_o,)](
        x_desc, dy_desc, weight, attn, dwp, dap, b, cin, cout, h, w, per, num_c, num_o, num_qw,
        num_qw * triton.cdiv(h, cfg.BH), KS=k, IS_FP32=x.dtype == torch.float32, PREC=prec,
        BH=cfg.BH, BW=cfg.BW, BN=cfg.BN, BK=cfg.BK, num_warps=cfg.num_warps, num_stages=cfg.num_stages)


__all__ = ["TmaConfig", "CANDIDATES", "DWA_CANDIDATES", "applies", "modulated_conv_tma", "modulated_conv_dx_tma",
           "weight_grad_partials_tma", "channels_last_padded"]
