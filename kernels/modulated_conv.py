"""Triton kernels of the modulated convolution (docs/model.md, "ExplainableConv"); any groups.

Modulated conv, y[b,o,q] = Σ_{c,t} Wt[o,c,t]·A[b,c,t]·x[b,c,q+t] + bias[o] (stride 1, 'same' padding, odd
k ≤ 7, any groups: the GEMMs carry the group in their grid; no per-sample weight is ever written to memory):
  * `_conv_fwd_kernel`: implicit GEMM, one program per BM pixels × BN output channels of one (sample, group);
    the reduction runs over (tap, BK input channels) in one flat loop; the x tile (BM×BK, shifted by the tap,
    zero outside the image) is multiplied by A[b, c-block, t] in fp32 — the per-(b,c,t) scaling of the INPUT
    operand — rounded to the input dtype, and fed to tl.dot with the batch-shared weight tile (BK×BN).
  * `_conv_dx_kernel`: the transposed implicit GEMM dx[b,c,p] = Σ_{t,o} dy[b,o,p−t]·(Wt[o,c,t]·A[b,c,t]);
    here the scaled operand is the weight tile (per column c, in registers), so all taps share one accumulator.
  * `_conv_dwa_kernel`: per (tap, group, c-block, o-block, batch chunk) program, for each sample b of its
    chunk, G_b = Σ_q x[b,c,q+t]·dy[b,o,q] (tl.dot over pixel blocks); then dA partial = Σ_o Wt[o,c,t]·G_b
    (one partial per o-block) and dWt partial += A[b,c,t]·G_b (one partial per batch chunk). Partials are
    summed over their first axis by `_sum_rows_kernel` in a fixed order; dbias = Σ dy is torch's reduction
    (a fixed tree, no atomics).
  * depthwise (groups = Cin = Cout) goes to the direct kernels of depthwise_conv.py.

Determinism: every output element, and every partial, is computed by one program in a fixed order, and
partials are reduced in a fixed order: no atomics, bitwise reproducible for a given config. Configs: see
kernels/_tuning.py (the heuristic below unless a caller, the interpreter or opt-in autotuning picks). The
candidates of all three also hold the tensor-descriptor kernels of modulated_conv_tma.py (groups = 1).

Precision: float32 accumulation everywhere. float32 inputs use IEEE dots, or TF32 dots when the user opts in
with torch.set_float32_matmul_precision("high") (see _launch.dot_precision); bfloat16 and
float16 inputs use dots in their own dtype. float64 is not supported (`why_not` says so; `auto` then uses
the reference), nor bfloat16 under the CPU interpreter (no bfloat16 math there).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from interir.kernels._launch import (DTYPES, INT32_MAX, dot_precision, dtype_name, new_output, sum_rows,
                                     tensors_reason)
from interir.kernels._tuning import Tuning
from interir.kernels import modulated_conv_tma as tma
from interir.kernels.depthwise_conv import depthwise_conv, depthwise_conv_backward, is_depthwise

MAX_K = 7


@dataclass(frozen=True)
class GemmConfig:
    """Tile of an implicit-GEMM kernel: BM×BN output tile, BK reduction block (all ≥ 16)."""

    BM: int
    BN: int
    BK: int
    num_warps: int = 4
    num_stages: int = 2

    def __str__(self) -> str:
        return f"BM{self.BM}_BN{self.BN}_BK{self.BK}_w{self.num_warps}_s{self.num_stages}"

# Candidates per kernel; tests run each one alone; the first is the interpreter's (few, wide programs).
# conv_fwd: BM pixels × BN out-channels, BK in-channels; conv_dx: BM pixels × BN in-channels, BK
# out-channels; conv_dwa: BM in-channels × BN out-channels, BK pixels.
_GEMM = (
    GemmConfig(64, 64, 32, num_warps=4, num_stages=2),
    GemmConfig(32, 16, 16, num_warps=2, num_stages=2),
    GemmConfig(64, 32, 16, num_warps=4, num_stages=2),
    GemmConfig(128, 64, 32, num_warps=4, num_stages=3),
    GemmConfig(128, 128, 32, num_warps=8, num_stages=3),
    GemmConfig(128, 64, 32, num_warps=8, num_stages=3),
    GemmConfig(32, 32, 16, num_warps=4, num_stages=2),
    GemmConfig(64, 64, 32, num_warps=8, num_stages=2),
)

# The heuristics below are a fixed function of the shapes and precision; every choice compiles without a
# register spill for sm_80/90/100/120 with Triton 3.6 and 3.9 at the shapes `interir check --static` records
# (odd maps included): each found by a search over the candidates and confirmed by the gate for both versions.
# Float32 with IEEE dots (TF32 off) runs its products on the CUDA cores, which hold whole operand tiles in
# registers: hence the small tiles for "float32 ieee". "Narrow" is ≤ 32 channels per group on the output side.


def _fwd_heuristic(key: tuple) -> GemmConfig:
    """key: (pixels per sample, out-channels per group, in-channels per group, k, "dtype precision")."""
    n, precision = key[1], key[-1]
    if precision == "float32 ieee":
        return _GEMM[2]
    if n <= 32 and not precision.startswith("float32"):
        return _GEMM[3]
    return _GEMM[5]


def _dx_heuristic(key: tuple) -> GemmConfig:
    """key: (pixels per sample, in-channels per group, out-channels per group, k, "dtype precision")."""
    n, precision = key[1], key[-1]
    if precision == "float32 ieee":
        return _GEMM[6]
    if n <= 32 and precision == "float32 tf32":
        return _GEMM[7]
    if n <= 32 and precision.startswith("float16"):
        return _GEMM[3]
    return _GEMM[5]


def _dwa_heuristic(key: tuple) -> GemmConfig:
    """key: (in-channels per group, out-channels per group, pixels per sample, k, batch, "dtype precision")."""
    wide, precision = max(key[0], key[1]) > 32, key[-1]
    if precision == "float32 ieee":
        return DWA.candidates[2]
    if wide:
        return DWA.candidates[5] if precision == "float32 tf32" else DWA.candidates[3]
    return DWA.candidates[4]


FWD = Tuning("conv_fwd", _GEMM + tma.CANDIDATES, _fwd_heuristic)  # + the descriptor kernels (groups = 1)
DX = Tuning("conv_dx", _GEMM + tma.CANDIDATES, _dx_heuristic)
DWA = Tuning(
    "conv_dwa",
    (
        GemmConfig(64, 64, 64, num_warps=4, num_stages=2),
        GemmConfig(16, 16, 16, num_warps=2, num_stages=2),
        GemmConfig(16, 16, 16, num_warps=4, num_stages=1),
        GemmConfig(32, 32, 16, num_warps=4, num_stages=2),
        GemmConfig(64, 64, 32, num_warps=8, num_stages=2),
        GemmConfig(32, 32, 32, num_warps=4, num_stages=2),
    ) + tma.DWA_CANDIDATES,
    _dwa_heuristic,
)


@triton.jit
def _conv_tile(NUM_N, NUM_M, GROUPS, W, HW, BM: tl.constexpr):
    """This program's tile of an implicit-GEMM conv grid (sample·group, pixel block, channel block; channel block
    fastest): (channel block, sample, group, pixel offsets, their mask, pixel row, pixel column)."""
    pid = tl.program_id(0)
    pid_n = pid % NUM_N
    rest = pid // NUM_N
    pid_bg = rest // NUM_M
    offs_m = (rest % NUM_M) * BM + tl.arange(0, BM)
    return pid_n, pid_bg // GROUPS, pid_bg % GROUPS, offs_m, offs_m < HW, offs_m // W, offs_m % W


@triton.jit
def _conv_fwd_kernel(x_ptr, w_ptr, a_ptr, bias_ptr, y_ptr,
                     Cin, Cout, H, W, GROUPS, CIN_G, COUT_G, NUM_M, NUM_N, NUM_CB,
                     KS: tl.constexpr, HAS_BIAS: tl.constexpr, IS_FP32: tl.constexpr, PREC: tl.constexpr,
                     BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """y tile (BM pixels × BN out-channels of one sample and group) = Σ_{t, c} (A⊙x_shifted) · Wt_t.

    x: B×Cin×H×W, w: k×k×CIN_G×Cout (the shared weight, tap-major), a: B×Cin×k×k (fp32), y: B×Cout×H×W.
    """
    KK = KS * KS
    PAD = KS // 2
    HW = H * W
    pid_n, bb, g, offs_m, m_ok, ph, pw = _conv_tile(NUM_N, NUM_M, GROUPS, W, HW, BM)
    offs_n = pid_n * BN + tl.arange(0, BN)
    n_ok = offs_n < COUT_G
    o_glob = g * COUT_G + offs_n
    offs_k = tl.arange(0, BK)
    chan0 = bb.to(tl.int64) * Cin + g * CIN_G
    x_base = x_ptr + chan0 * HW
    a_base = a_ptr + chan0 * KK
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for it in range(0, KK * NUM_CB):
        t = it // NUM_CB
        c0 = (it - t * NUM_CB) * BK
        hh = ph + (t // KS - PAD)
        ww = pw + (t % KS - PAD)
        p_ok = m_ok & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
        cc = c0 + offs_k
        c_ok = cc < CIN_G
        xt = tl.load(x_base + cc[None, :] * HW + (hh * W + ww)[:, None],
                     mask=p_ok[:, None] & c_ok[None, :], other=0.0)
        av = tl.load(a_base + cc * KK + t, mask=c_ok, other=0.0).to(tl.float32)
        xs = (xt.to(tl.float32) * av[None, :]).to(x_ptr.dtype.element_ty)  # A scales the input operand
        wt = tl.load(w_ptr + (t * CIN_G + cc)[:, None] * Cout + o_glob[None, :],
                     mask=c_ok[:, None] & n_ok[None, :], other=0.0)
        if IS_FP32:
            acc = tl.dot(xs, wt, acc, input_precision=PREC)
        else:
            acc = tl.dot(xs, wt, acc)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + o_glob, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    y_base = y_ptr + (bb.to(tl.int64) * Cout + g * COUT_G) * HW
    tl.store(y_base + offs_n[None, :] * HW + offs_m[:, None], acc.to(y_ptr.dtype.element_ty),
             mask=m_ok[:, None] & n_ok[None, :])


@triton.jit
def _conv_dx_kernel(dy_ptr, w_ptr, a_ptr, dx_ptr,
                    Cin, Cout, H, W, GROUPS, CIN_G, COUT_G, NUM_M, NUM_N, NUM_OB,
                    KS: tl.constexpr, IS_FP32: tl.constexpr, PREC: tl.constexpr,
                    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """dx tile (BM pixels × BN in-channels) = Σ_{t, o} dy_shifted(−t) · (Wt_t ⊙ A[b, :, t]).

    dy: B×Cout×H×W, w: k×k×Cout×CIN_G (tap-major), a: B×Cin×k×k (fp32), dx: B×Cin×H×W.
    """
    KK = KS * KS
    PAD = KS // 2
    HW = H * W
    pid_n, bb, g, offs_m, m_ok, ph, pw = _conv_tile(NUM_N, NUM_M, GROUPS, W, HW, BM)
    offs_n = pid_n * BN + tl.arange(0, BN)  # input channel within the group
    n_ok = offs_n < CIN_G
    offs_k = tl.arange(0, BK)
    dy_base = dy_ptr + (bb.to(tl.int64) * Cout + g * COUT_G) * HW
    chan0 = bb.to(tl.int64) * Cin + g * CIN_G
    a_base = a_ptr + chan0 * KK
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for it in range(0, KK * NUM_OB):
        t = it // NUM_OB
        o0 = (it - t * NUM_OB) * BK
        hh = ph - (t // KS - PAD)
        ww = pw - (t % KS - PAD)
        p_ok = m_ok & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
        oo = o0 + offs_k
        o_ok = oo < COUT_G
        dyt = tl.load(dy_base + oo[None, :] * HW + (hh * W + ww)[:, None],
                      mask=p_ok[:, None] & o_ok[None, :], other=0.0)
        av = tl.load(a_base + offs_n * KK + t, mask=n_ok, other=0.0).to(tl.float32)
        wt = tl.load(w_ptr + (t * Cout + g * COUT_G + oo)[:, None] * CIN_G + offs_n[None, :],
                     mask=o_ok[:, None] & n_ok[None, :], other=0.0)
        ws = (wt.to(tl.float32) * av[None, :]).to(dy_ptr.dtype.element_ty)  # per-(b, c, t) scaling
        if IS_FP32:
            acc = tl.dot(dyt, ws, acc, input_precision=PREC)
        else:
            acc = tl.dot(dyt, ws, acc)
    dx_base = dx_ptr + chan0 * HW
    tl.store(dx_base + offs_n[None, :] * HW + offs_m[:, None], acc.to(dx_ptr.dtype.element_ty),
             mask=m_ok[:, None] & n_ok[None, :])


@triton.jit
def _conv_dwa_kernel(x_ptr, dy_ptr, w_ptr, a_ptr, dwp_ptr, dap_ptr,
                     B, Cin, Cout, H, W, GROUPS, CIN_G, COUT_G, B_PER, NUM_C, NUM_O,
                     KS: tl.constexpr, IS_FP32: tl.constexpr, PREC: tl.constexpr,
                     BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """Weight-side gradients of one tap t for BM in-channels × BN out-channels of one group, over the samples
    of one batch chunk s:  G_b = Σ_q x[b, c, q+t]·dy[b, o, q]  (BK pixels per step);
        dA partial  dap[o-block, b, c, t] = Σ_o Wt[o, c, t]·G_b[c, o]
        dWt partial dwp[s, o, c, t]       = Σ_{b in chunk} A[b, c, t]·G_b[c, o]
    x: B×Cin×H×W, dy: B×Cout×H×W, w: Cout×CIN_G×k×k, a: B×Cin×k×k (fp32); partials float32.
    """
    KK = KS * KS
    PAD = KS // 2
    pid = tl.program_id(0)
    pid_o = pid % NUM_O
    rest = pid // NUM_O
    pid_c = rest % NUM_C
    rest = rest // NUM_C
    t = rest % KK
    rest = rest // KK
    g = rest % GROUPS
    s = rest // GROUPS
    dh = t // KS - PAD
    dw = t % KS - PAD
    HW = H * W
    offs_c = pid_c * BM + tl.arange(0, BM)
    c_ok = offs_c < CIN_G
    offs_o = pid_o * BN + tl.arange(0, BN)
    o_ok = offs_o < COUT_G
    c_glob = g * CIN_G + offs_c
    o_glob = g * COUT_G + offs_o
    offs_q = tl.arange(0, BK)
    co_ok = c_ok[:, None] & o_ok[None, :]
    wt = tl.load(w_ptr + (o_glob[None, :] * CIN_G + offs_c[:, None]) * KK + t, mask=co_ok, other=0.0)
    wt = wt.to(tl.float32)
    dw_acc = tl.zeros([BM, BN], dtype=tl.float32)
    b_lo = s * B_PER
    b_hi = tl.minimum(b_lo + B_PER, B)
    for i in range(0, b_hi - b_lo):
        bb = (b_lo + i).to(tl.int64)
        x_base = x_ptr + (bb * Cin + g * CIN_G) * HW
        dy_base = dy_ptr + (bb * Cout + g * COUT_G) * HW
        gacc = tl.zeros([BM, BN], dtype=tl.float32)
        for q0 in range(0, HW, BK):
            q = q0 + offs_q
            q_ok = q < HW
            hh = q // W + dh
            ww = q % W + dw
            s_ok = q_ok & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
            xt = tl.load(x_base + offs_c[:, None] * HW + (hh * W + ww)[None, :],
                         mask=c_ok[:, None] & s_ok[None, :], other=0.0)
            dyt = tl.load(dy_base + offs_o[None, :] * HW + q[:, None],
                          mask=q_ok[:, None] & o_ok[None, :], other=0.0)
            if IS_FP32:
                gacc = tl.dot(xt, dyt, gacc, input_precision=PREC)
            else:
                gacc = tl.dot(xt, dyt, gacc)
        av = tl.load(a_ptr + (bb * Cin + c_glob) * KK + t, mask=c_ok, other=0.0).to(tl.float32)
        dw_acc += gacc * av[:, None]
        da = tl.sum(gacc * wt, axis=1)
        tl.store(dap_ptr + ((pid_o * B + bb) * Cin + c_glob) * KK + t, da, mask=c_ok)
    s64 = s.to(tl.int64)
    tl.store(dwp_ptr + ((s64 * Cout + o_glob[None, :]) * CIN_G + offs_c[:, None]) * KK + t, dw_acc, mask=co_ok)


def _launchable(cfg, tuning: Tuning, key: tuple, groups: int):
    """`cfg`, or the heuristic's implicit-GEMM config where a descriptor config cannot take this grouping."""
    if isinstance(cfg, tma.TmaConfig) and not tma.applies(groups):
        return tuning.heuristic(key)
    return cfg


def modulated_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, attn: torch.Tensor,
                   groups: int = 1, *, config=None) -> torch.Tensor:
    """y[b,o] = Σ_{c,t} Wt[o,c,t]·A[b,c,t]·x[b,c,·+t] + bias[o] ('same' padding) in x's dtype."""
    x = x.contiguous()
    b, cin, h, w = x.shape
    cout, cin_g, k, _ = weight.shape
    weight = weight.to(x.dtype)
    attn = attn.contiguous()
    y = new_output((b, cout, h, w), x.dtype, x.device)
    if y.numel() == 0:
        return y
    if is_depthwise(cin, cout, groups):
        return depthwise_conv(x, weight, bias, attn, y, config)
    has_bias = bias is not None
    bias_arg = bias.contiguous() if has_bias else y
    hw = h * w
    cout_g = cout // groups
    wt = weight.permute(2, 3, 1, 0).contiguous()  # k×k×Cin_g×Cout: contiguous along output channels
    is_fp32 = x.dtype == torch.float32
    prec = dot_precision(x.dtype)
    key = (hw, cout_g, cin_g, k, f"{dtype_name(x.dtype)} {prec}")

    def launch(cfg):
        cfg = _launchable(cfg, FWD, key, groups)
        if isinstance(cfg, tma.TmaConfig):
            return tma.modulated_conv_tma(x, weight, bias, attn, y, cfg, prec)
        num_m, num_n = triton.cdiv(hw, cfg.BM), triton.cdiv(cout_g, cfg.BN)
        _conv_fwd_kernel[(num_m * num_n * b * groups,)](
            x, wt, attn, bias_arg, y, cin, cout, h, w, groups, cin_g, cout_g, num_m, num_n,
            triton.cdiv(cin_g, cfg.BK), KS=k, HAS_BIAS=has_bias, IS_FP32=is_fp32, PREC=prec,
            BM=cfg.BM, BN=cfg.BN, BK=cfg.BK, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        return y

    return FWD.run(key, config, x.device, launch)


def _dwa_chunks(b: int, base_programs: int) -> tuple[int, int]:
    """Split the batch into S chunks (samples per chunk, S) so that the grid has enough programs; depends on
    the shapes only, so the summation order is fixed for a given config."""
    want = max(1, triton.cdiv(512, max(1, base_programs)))
    per = triton.cdiv(b, min(b, want))
    return per, triton.cdiv(b, per)


def modulated_conv_backward(grad_y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, attn: torch.Tensor,
                            groups: int = 1, *, config_dx=None, config_dwa=None):
    """(dx, dWt, dA, dbias) of `modulated_conv` given dy; dtypes as the reference (x, weight, attn, weight)."""
    x = x.contiguous()
    b, cin, h, w = x.shape
    cout, cin_g, k, _ = weight.shape
    kk = k * k
    hw = h * w
    dy = grad_y.to(x.dtype).contiguous()
    wx = weight.to(x.dtype).contiguous()
    attn = attn.contiguous()
    dx = new_output(x.shape, x.dtype, x.device)
    dweight = new_output(weight.shape, weight.dtype, weight.device)
    dattn = new_output(attn.shape, attn.dtype, attn.device)
    dbias = new_output((cout,), weight.dtype, weight.device)
    if b == 0 or hw == 0:
        return dx, dweight.zero_(), dattn.zero_(), dbias.zero_()
    dev = x.device

    if is_depthwise(cin, cout, groups):
        depthwise_conv_backward(dy, x, wx, attn, dx, dweight, dattn, dbias, config_dx, config_dwa)
        return dx, dweight, dattn, dbias

    cout_g = cout // groups
    is_fp32 = x.dtype == torch.float32
    prec = dot_precision(x.dtype)
    w_dx = wx.permute(2, 3, 0, 1).contiguous()  # k×k×Cout×Cin_g: contiguous along input channels
    dx_key = (hw, cin_g, cout_g, k, f"{dtype_name(x.dtype)} {prec}")

    def launch_dx(cfg):
        cfg = _launchable(cfg, DX, dx_key, groups)
        if isinstance(cfg, tma.TmaConfig):
            return tma.modulated_conv_dx_tma(dy, wx, attn, dx, cfg, prec)
        num_m, num_n = triton.cdiv(hw, cfg.BM), triton.cdiv(cin_g, cfg.BN)
        _conv_dx_kernel[(num_m * num_n * b * groups,)](
            dy, w_dx, attn, dx, cin, cout, h, w, groups, cin_g, cout_g, num_m, num_n,
            triton.cdiv(cout_g, cfg.BK), KS=k, IS_FP32=is_fp32, PREC=prec,
            BM=cfg.BM, BN=cfg.BN, BK=cfg.BK, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        return dx

    DX.run(dx_key, config_dx, dev, launch_dx)

    state = {}
    dwa_key = (cin_g, cout_g, hw, k, b, f"{dtype_name(x.dtype)} {prec}")

    def launch_dwa(cfg):
        cfg = _launchable(cfg, DWA, dwa_key, groups)
        if isinstance(cfg, tma.TmaConfig):
            num_c, num_o = triton.cdiv(cin, cfg.BK), triton.cdiv(cout, cfg.BN)
            per, chunks = _dwa_chunks(b, kk * num_c * num_o)
            dwp = new_output((chunks, cout, cin, kk), torch.float32, dev)
            dap = new_output((num_o, b, cin, kk), torch.float32, dev)
            tma.weight_grad_partials_tma(x, dy, wx, attn, dwp, dap, per, cfg, prec)
            state["partials"] = (dwp, dap)
            return dwp
        num_c, num_o = triton.cdiv(cin_g, cfg.BM), triton.cdiv(cout_g, cfg.BN)
        per, chunks = _dwa_chunks(b, kk * groups * num_c * num_o)
        dwp = new_output((chunks, cout, cin_g, kk), torch.float32, dev)
        dap = new_output((num_o, b, cin, kk), torch.float32, dev)
        _conv_dwa_kernel[(chunks * groups * kk * num_c * num_o,)](
            x, dy, wx, attn, dwp, dap, b, cin, cout, h, w, groups, cin_g, cout_g, per, num_c, num_o,
            KS=k, IS_FP32=is_fp32, PREC=prec, BM=cfg.BM, BN=cfg.BN, BK=cfg.BK,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        state["partials"] = (dwp, dap)
        return dwp

    DWA.run(dwa_key, config_dwa, dev, launch_dwa)
    dwp, dap = state["partials"]
    sum_rows(dwp, dweight)
    sum_rows(dap, dattn)
    dbias.copy_(dy.sum((0, 2, 3), dtype=torch.float32))  # torch's reduction: a fixed tree, no atomics
    return dx, dweight, dattn, dbias


def why_not(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, attn: torch.Tensor,
            groups: int) -> str | None:
    """None if the kernels can compute modulated_conv(x, weight, bias, attn, groups), else a one-line reason."""
    for t, what in ((x, "x"), (weight, "weight")):
        reason = tensors_reason(f"triton modulated_conv ({what})", [t], DTYPES)
        if reason:
            return reason
    for t in (weight, bias, attn):
        if t is not None and t.device != x.device:
            return f"triton modulated_conv needs all tensors on {x.device}, got one on {t.device}"
    if not attn.is_floating_point():
        return f"triton modulated_conv takes a floating-point attn, got {str(attn.dtype).replace('torch.', '')}"
    cout, cin, k = weight.shape[0], x.shape[1], weight.shape[-1]
    if k % 2 == 0 or k > MAX_K:
        return f"triton modulated_conv takes odd kernel sizes up to {MAX_K}, got {k}"
    if groups < 1 or cin % groups or cout % groups:
        return f"triton modulated_conv: groups={groups} must divide Cin={cin} and Cout={cout}"
    if max(math.prod(x.shape[1:]), cout * x.shape[2] * x.shape[3]) > INT32_MAX:
        return "triton modulated_conv: one sample has more than 2³¹ elements"
    return None
