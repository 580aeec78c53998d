"""Triton kernels of the explainable convolution (SPEC §2): the attention A and the modulated convolution.

Attention, one pass over x (`_attn_fwd_kernel`, PL (b, c) planes per program, BP pixels per step):
    m = 1[(x − θ)/τ > 0];  counts[plane, t] = Σ_p m[plane, p]·M[p, t], one tl.dot per step with 0/1 float16
    operands (exact integer counts on every device), where M[p, t] = 1 if pixel p lies in bin t = (i, j);
    p = counts / bin area;  A = k²·softmax(p) over the k² taps (padded to ≥ 16).  Bins are PyTorch's
    adaptive bins [⌊i·n/k⌋, ⌈(i+1)·n/k⌉), which may overlap.
Its backward (`_attn_bwd_kernel`, same grid): dp = k²·s⊙(g − Σ g·s), dmask = (dp / area)·Mᵀ (IEEE fp32
tl.dot), dx = dmask·σ'(z)/τ, and the program's Σ dx to a partials buffer; dθ = −Σ partials, summed by one
program in a fixed order.

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
    (one partial per o-block) and dWt partial += A[b,c,t]·G_b (one partial per batch chunk), and the
    chunk's Σ dy for dbias. Partials are summed over their first axis by `_sum_rows_kernel` in a fixed order.
  * depthwise (groups = Cin = Cout): `_dw_conv_kernel` (direct, taps × pixels tile; forward and, with FLIP,
    dx) and `_dw_grad_kernel` (one program per (b, c): G[t] = Σ_q x[q+t]·dy[q] → dA, dWt and dbias partials).

Determinism: every output element, and every partial, is computed by one program in a fixed order and
partials are reduced in a fixed order: no atomics, bitwise reproducible for a given config. The config of a
launch is fixed by the shapes (a heuristic) unless INTERIR_TRITON_AUTOTUNE=1 asks to time every config of
CONFIGS once per shape (cached per process; off under torch.use_deterministic_algorithms), or a caller
passes `config=` (a config object or an index into CONFIGS[kernel]); the interpreter uses CONFIGS[k][0].

Precision: float32 accumulation everywhere. float32 inputs use TF32 dots when
torch.backends.cudnn.allow_tf32 is on (as F.conv2d does on a GPU) and IEEE dots otherwise; bfloat16 and
float16 inputs use dots in their own dtype. float64 is not supported (`supports` says so; `auto` then uses
the reference), nor bfloat16 under the CPU interpreter (no bfloat16 math there).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from interir.kernels._launch import device_reason, interpreting, new_output, sum_partials

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
AUTOTUNE_ENV = "INTERIR_TRITON_AUTOTUNE"
MAX_ATTN_K = 16
MAX_CONV_K = 7
_INT32_MAX = 2**31 - 1


# --------------------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class AttnConfig:
    """Tile of the attention kernels: PL planes (b, c) per program (≥ 16), BP pixels per step (≥ 16)."""

    PL: int
    BP: int
    num_warps: int = 4

    def __str__(self) -> str:
        return f"PL{self.PL}_BP{self.BP}_w{self.num_warps}"


@dataclass(frozen=True)
class PlaneConfig:
    """Tile of the depthwise kernels: BLOCK pixels of one (b, c) plane per program step."""

    BLOCK: int
    num_warps: int = 4

    def __str__(self) -> str:
        return f"B{self.BLOCK}_w{self.num_warps}"


# Candidates per kernel; tests run each one alone. CONFIGS[kernel][0] is the one the interpreter uses (few,
# wide programs: the interpreter's cost is per program and per op, not per element).
# conv_fwd: BM pixels × BN out-channels, BK in-channels; conv_dx: BM pixels × BN in-channels, BK
# out-channels; conv_dwa: BM in-channels × BN out-channels, BK pixels.
CONFIGS: dict[str, tuple] = {
    "conv_fwd": (
        GemmConfig(64, 64, 32, num_warps=4, num_stages=2),
        GemmConfig(32, 16, 16, num_warps=2, num_stages=2),
        GemmConfig(64, 32, 32, num_warps=4, num_stages=3),
        GemmConfig(128, 64, 32, num_warps=4, num_stages=3),
        GemmConfig(128, 128, 32, num_warps=8, num_stages=3),
    ),
    "conv_dx": (
        GemmConfig(64, 64, 32, num_warps=4, num_stages=2),
        GemmConfig(32, 16, 16, num_warps=2, num_stages=2),
        GemmConfig(64, 32, 32, num_warps=4, num_stages=3),
        GemmConfig(128, 64, 32, num_warps=4, num_stages=3),
        GemmConfig(128, 128, 32, num_warps=8, num_stages=3),
    ),
    "conv_dwa": (
        GemmConfig(64, 64, 64, num_warps=4, num_stages=2),
        GemmConfig(16, 16, 16, num_warps=2, num_stages=2),
        GemmConfig(32, 32, 64, num_warps=4, num_stages=3),
        GemmConfig(64, 64, 128, num_warps=8, num_stages=3),
    ),
    "attention": (
        AttnConfig(32, 256, num_warps=4),
        AttnConfig(16, 16, num_warps=2),
        AttnConfig(16, 128, num_warps=4),
        AttnConfig(32, 128, num_warps=8),
    ),
    "depthwise": (
        PlaneConfig(256, num_warps=4),
        PlaneConfig(32, num_warps=2),
        PlaneConfig(1024, num_warps=8),
    ),
}

_TUNED: dict = {}


def _autotune_on(device: torch.device) -> bool:
    return (
        device.type == "cuda"
        and os.environ.get(AUTOTUNE_ENV) == "1"
        and not torch.are_deterministic_algorithms_enabled()
        and not torch.cuda.is_current_stream_capturing()
    )


def _heuristic(kernel: str, key: tuple):
    """A fixed config from the shapes (no timing), so that results are reproducible across processes."""
    cfgs = CONFIGS[kernel]
    if kernel in ("conv_fwd", "conv_dx"):
        m, n = key[0], key[1]  # pixels per sample, output columns (channels of a group)
        if n <= 32:
            return cfgs[2]
        return cfgs[3] if m >= 4096 else cfgs[0]
    if kernel == "conv_dwa":
        m, n = key[0], key[1]  # in- and out-channels of a group
        return cfgs[2] if max(m, n) <= 32 else cfgs[0]
    if kernel == "attention":
        return cfgs[2]
    if kernel == "depthwise":
        return cfgs[2] if key[0] >= 16384 else cfgs[0]
    raise KeyError(kernel)


def _resolve(kernel: str, config):
    if config is None:
        return None
    return CONFIGS[kernel][config] if isinstance(config, int) else config


def _run(kernel: str, key: tuple, config, device: torch.device, launch):
    """Run `launch(cfg)` with the caller's config, else the interpreter's, else a tuned or fixed choice."""
    with _device_of(device):
        return launch(_choose(kernel, key, config, device, launch))


def _choose(kernel: str, key: tuple, config, device: torch.device, launch):
    cfg = _resolve(kernel, config)
    if cfg is None and interpreting():
        cfg = CONFIGS[kernel][0]
    if cfg is None and _autotune_on(device):
        full_key = (kernel, device.index) + key
        cfg = _TUNED.get(full_key)
        if cfg is None:
            best = (float("inf"), None)
            for cand in CONFIGS[kernel][1:]:
                try:
                    ms = triton.testing.do_bench(lambda: launch(cand), warmup=5, rep=25)
                except Exception:  # noqa: BLE001  (a config that does not fit this device is skipped)
                    continue
                best = min(best, (ms, cand), key=lambda p: p[0])
            cfg = best[1] or _heuristic(kernel, key)
            _TUNED[full_key] = cfg
    if cfg is None:
        cfg = _heuristic(kernel, key)
    return cfg


class _NullCtx:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _device_of(device: torch.device):
    """Triton launches on the current CUDA device: make it the tensors' one."""
    return torch.cuda.device(device) if device.type == "cuda" else _NullCtx()


def _dot_precision(dtype: torch.dtype) -> str:
    if dtype == torch.float32 and not interpreting() and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return "ieee"


def _pow2(n: int, lo: int = 1) -> int:
    return max(lo, triton.next_power_of_2(max(1, int(n))))


# --------------------------------------------------------------------------------------------------------
# Shared reduction: sum the rows of a partials buffer in a fixed order
# --------------------------------------------------------------------------------------------------------


@triton.jit
def _sum_rows_kernel(src_ptr, out_ptr, S, N, BLOCK_S: tl.constexpr, BLOCK_N: tl.constexpr):
    """out[n] = Σ_s src[s, n] (float32 partials) cast to out's dtype; fixed order, one program per column block."""
    pid = tl.program_id(0)
    cols = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < N
    rows0 = tl.arange(0, BLOCK_S)
    acc = tl.zeros([BLOCK_S, BLOCK_N], dtype=tl.float32)
    for s0 in range(0, S, BLOCK_S):
        rows = s0 + rows0
        ok = (rows[:, None] < S) & col_ok[None, :]
        acc += tl.load(src_ptr + rows[:, None].to(tl.int64) * N + cols[None, :], mask=ok, other=0.0)
    tl.store(out_ptr + cols, tl.sum(acc, axis=0).to(out_ptr.dtype.element_ty), mask=col_ok)


def _sum_rows(partials: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Write Σ over the first axis of float32 `partials` (S×…) into `out` (… elements, any float dtype)."""
    s = partials.shape[0]
    n = partials[0].numel()
    block_s = min(_pow2(s, 2), 8)
    # the interpreter pays per program, not per element: one wide block there
    block_n = min(_pow2(n), 16384) if interpreting() else 256
    with _device_of(out.device):
        _sum_rows_kernel[(triton.cdiv(n, block_n),)](
            partials, out, s, n, BLOCK_S=block_s, BLOCK_N=block_n, num_warps=4
        )
    return out


# --------------------------------------------------------------------------------------------------------
# Attention: mask → adaptive-pool fractions → softmax → ×k², and its straight-through backward
# --------------------------------------------------------------------------------------------------------


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
    for start in range(0, HW, BP):
        p = start + p0
        p_ok = p < HW
        ok = pl_ok[:, None] & p_ok[None, :]
        xv = tl.load(x_ptr + rows[:, None] + p[None, :], mask=ok, other=0.0).to(tl.float32)
        m = (((xv - theta) / tau > 0) & ok).to(tl.float16)
        member_t = _bin_membership(p, p_ok, tt, H, W, K).to(tl.float16)  # KKP×BP
        counts += tl.dot(m, tl.trans(member_t))
    t_ok = tt < K * K
    pooled = tl.where(t_ok[None, :], counts / _bin_area(tt, H, W, K)[None, :], float("-inf"))
    p_max = tl.max(pooled, axis=1)
    e = tl.where(t_ok[None, :], tl.exp(pooled - p_max[:, None]), 0.0)
    attn = e / tl.sum(e, axis=1)[:, None] * (K * K)
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
    bp = min(cfg.BP, max(16, _pow2(hw)))
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
        _attn_fwd_kernel[(programs,)](x, theta32, out, b * c, h, w, float(tau), K=k, KKP=_pow2(k * k, 16),
                                      PL=cfg.PL, BP=bp, num_warps=cfg.num_warps)
        return out

    return _run("attention", (b * c, h * w, k), config, x.device, launch)


def explainable_attention_backward(grad_attn: torch.Tensor, x: torch.Tensor, theta: torch.Tensor,
                                   attn: torch.Tensor, tau: float = 0.5, *, config=None):
    """(dx like x, dθ like theta) of `explainable_attention` given dA and A (straight-through, SPEC §2)."""
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
                                      K=k, KKP=_pow2(k * k, 16), PL=cfg.PL, BP=bp, num_warps=cfg.num_warps)
        state["partials"] = partials
        return dx

    _run("attention", (b * c, h * w, k), config, x.device, launch)
    with _device_of(x.device):
        sum_partials(state["partials"], dtheta, -1.0)
    return dx, dtheta

# --------------------------------------------------------------------------------------------------------
# Modulated convolution: implicit GEMMs (any groups) and direct depthwise kernels
# --------------------------------------------------------------------------------------------------------


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
def _conv_dwa_kernel(x_ptr, dy_ptr, w_ptr, a_ptr, dwp_ptr, dap_ptr, dbp_ptr,
                     B, Cin, Cout, H, W, GROUPS, CIN_G, COUT_G, B_PER, NUM_C, NUM_O,
                     KS: tl.constexpr, IS_FP32: tl.constexpr, PREC: tl.constexpr,
                     BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """Weight-side gradients of one tap t for BM in-channels × BN out-channels of one group, over the samples
    of one batch chunk s:  G_b = Σ_q x[b, c, q+t]·dy[b, o, q]  (BK pixels per step);
        dA partial  dap[o-block, b, c, t] = Σ_o Wt[o, c, t]·G_b[c, o]
        dWt partial dwp[s, o, c, t]       = Σ_{b in chunk} A[b, c, t]·G_b[c, o]
        dbias partial dbp[s, o]           = Σ_{b in chunk} Σ_q dy[b, o, q]   (written by t = 0, c-block 0)
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
    db_acc = tl.zeros([BN], dtype=tl.float32)
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
            db_acc += tl.sum(dyt.to(tl.float32), axis=0)
        av = tl.load(a_ptr + (bb * Cin + c_glob) * KK + t, mask=c_ok, other=0.0).to(tl.float32)
        dw_acc += gacc * av[:, None]
        da = tl.sum(gacc * wt, axis=1)
        tl.store(dap_ptr + ((pid_o * B + bb) * Cin + c_glob) * KK + t, da, mask=c_ok)
    s64 = s.to(tl.int64)
    tl.store(dwp_ptr + ((s64 * Cout + o_glob[None, :]) * CIN_G + offs_c[:, None]) * KK + t, dw_acc, mask=co_ok)
    first = (offs_o * 0 + t + pid_c) == 0  # only one program per (s, group, o-block) writes dbias
    tl.store(dbp_ptr + s64 * Cout + o_glob, db_acc, mask=o_ok & first)


@triton.jit
def _dw_conv_kernel(src_ptr, w_ptr, a_ptr, bias_ptr, out_ptr, C, H, W, NUM_P,
                    KS: tl.constexpr, KKP: tl.constexpr, FLIP: tl.constexpr, HAS_BIAS: tl.constexpr,
                    BLOCK: tl.constexpr):
    """Depthwise: out[b,c,p] = Σ_t Wt[c,t]·A[b,c,t]·src[b,c,p ± t] (+ bias[c]); FLIP (−t) gives dx from dy."""
    KK = KS * KS
    PAD = KS // 2
    pid = tl.program_id(0)
    pid_p = pid % NUM_P
    bc = pid // NUM_P
    c = bc % C
    HW = H * W
    tt = tl.arange(0, KKP)
    t_ok = tt < KK
    dh = tt // KS - PAD
    dw = tt % KS - PAD
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
    PAD = KS // 2
    bc = tl.program_id(0)
    c = bc % C
    HW = H * W
    tt = tl.arange(0, KKP)
    t_ok = tt < KK
    dh = tt // KS - PAD
    dw = tt % KS - PAD
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


def _is_depthwise(cin: int, cout: int, groups: int) -> bool:
    return groups > 1 and cin == groups and cout == groups


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
    has_bias = bias is not None
    bias_arg = bias.contiguous() if has_bias else y
    hw = h * w
    if _is_depthwise(cin, cout, groups):
        wf = weight.contiguous()

        def launch_dw(cfg):
            num_p = triton.cdiv(hw, cfg.BLOCK)
            _dw_conv_kernel[(num_p * b * cin,)](x, wf, attn, bias_arg, y, cin, h, w, num_p, KS=k,
                                                KKP=_pow2(k * k, 2), FLIP=False, HAS_BIAS=has_bias,
                                                BLOCK=cfg.BLOCK, num_warps=cfg.num_warps)
            return y

        return _run("depthwise", (hw, k), config, x.device, launch_dw)
    cout_g = cout // groups
    wt = weight.permute(2, 3, 1, 0).contiguous()  # k×k×Cin_g×Cout: contiguous along output channels
    is_fp32 = x.dtype == torch.float32
    prec = _dot_precision(x.dtype)

    def launch(cfg):
        num_m, num_n = triton.cdiv(hw, cfg.BM), triton.cdiv(cout_g, cfg.BN)
        _conv_fwd_kernel[(num_m * num_n * b * groups,)](
            x, wt, attn, bias_arg, y, cin, cout, h, w, groups, cin_g, cout_g, num_m, num_n,
            triton.cdiv(cin_g, cfg.BK), KS=k, HAS_BIAS=has_bias, IS_FP32=is_fp32, PREC=prec,
            BM=cfg.BM, BN=cfg.BN, BK=cfg.BK, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        return y

    return _run("conv_fwd", (hw, cout_g, cin_g, k, str(x.dtype)), config, x.device, launch)


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

    if _is_depthwise(cin, cout, groups):
        dwp = new_output((b, cin, kk), torch.float32, dev)
        dbp = new_output((b, cin), torch.float32, dev)
        da32 = dattn if attn.dtype == torch.float32 else new_output(attn.shape, torch.float32, dev)

        def launch_dx(cfg):
            num_p = triton.cdiv(hw, cfg.BLOCK)
            _dw_conv_kernel[(num_p * b * cin,)](dy, wx, attn, dy, dx, cin, h, w, num_p, KS=k,
                                                KKP=_pow2(kk, 2), FLIP=True, HAS_BIAS=False,
                                                BLOCK=cfg.BLOCK, num_warps=cfg.num_warps)
            return dx

        def launch_grad(cfg):
            _dw_grad_kernel[(b * cin,)](x, dy, wx, attn, da32, dwp, dbp, cin, h, w, KS=k, KKP=_pow2(kk, 2),
                                        BLOCK=cfg.BLOCK, num_warps=cfg.num_warps)
            return dwp

        _run("depthwise", (hw, k), config_dx, dev, launch_dx)
        _run("depthwise", (hw, k), config_dwa, dev, launch_grad)
        if da32 is not dattn:
            dattn.copy_(da32)
        _sum_rows(dwp, dweight)
        _sum_rows(dbp, dbias)
        return dx, dweight, dattn, dbias

    cout_g = cout // groups
    is_fp32 = x.dtype == torch.float32
    prec = _dot_precision(x.dtype)
    w_dx = wx.permute(2, 3, 0, 1).contiguous()  # k×k×Cout×Cin_g: contiguous along input channels

    def launch_dx(cfg):
        num_m, num_n = triton.cdiv(hw, cfg.BM), triton.cdiv(cin_g, cfg.BN)
        _conv_dx_kernel[(num_m * num_n * b * groups,)](
            dy, w_dx, attn, dx, cin, cout, h, w, groups, cin_g, cout_g, num_m, num_n,
            triton.cdiv(cout_g, cfg.BK), KS=k, IS_FP32=is_fp32, PREC=prec,
            BM=cfg.BM, BN=cfg.BN, BK=cfg.BK, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        return dx

    _run("conv_dx", (hw, cin_g, cout_g, k, str(x.dtype)), config_dx, dev, launch_dx)

    state = {}

    def launch_dwa(cfg):
        num_c, num_o = triton.cdiv(cin_g, cfg.BM), triton.cdiv(cout_g, cfg.BN)
        per, chunks = _dwa_chunks(b, kk * groups * num_c * num_o)
        dwp = new_output((chunks, cout, cin_g, kk), torch.float32, dev)
        dap = new_output((num_o, b, cin, kk), torch.float32, dev)
        dbp = new_output((chunks, cout), torch.float32, dev)
        _conv_dwa_kernel[(chunks * groups * kk * num_c * num_o,)](
            x, dy, wx, attn, dwp, dap, dbp, b, cin, cout, h, w, groups, cin_g, cout_g, per, num_c, num_o,
            KS=k, IS_FP32=is_fp32, PREC=prec, BM=cfg.BM, BN=cfg.BN, BK=cfg.BK,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        state["partials"] = (dwp, dap, dbp)
        return dwp

    _run("conv_dwa", (cin_g, cout_g, hw, k, b, str(x.dtype)), config_dwa, dev, launch_dwa)
    dwp, dap, dbp = state["partials"]
    _sum_rows(dwp, dweight)
    _sum_rows(dap, dattn)
    _sum_rows(dbp, dbias)
    return dx, dweight, dattn, dbias


# --------------------------------------------------------------------------------------------------------
# Backend registration
# --------------------------------------------------------------------------------------------------------


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _tensor_reason(op: str, t: torch.Tensor, what: str) -> str | None:
    reason = device_reason(f"triton {op} ({what})", [t], DTYPES)
    if reason:
        return reason
    if t.dtype == torch.bfloat16 and t.device.type == "cpu":
        return f"triton {op} cannot run bfloat16 under the CPU Triton interpreter (no bfloat16 math); use a GPU"
    return None


def supports(*args, **kwargs) -> str | None:
    """None if the Triton kernels can serve these op arguments, else a one-line reason."""
    if len(args) == 4:  # explainable_attention(x, theta, kernel_size, tau)
        x, theta, k, _ = args
        reason = _tensor_reason("explainable_attention", x, "x")
        if reason:
            return reason
        if theta.device != x.device:
            return f"triton explainable_attention needs theta on {x.device}, got {theta.device}"
        if not 1 <= k <= MAX_ATTN_K:
            return f"triton explainable_attention takes kernel_size 1…{MAX_ATTN_K}, got {k}"
        if x.shape[2] * x.shape[3] == 0:
            return "triton explainable_attention needs a non-empty H×W map"
        if math.prod(x.shape[1:]) > _INT32_MAX:
            return "triton explainable_attention: one sample has more than 2³¹ elements"
        return None
    x, weight, bias, attn, groups = args
    for t, what in ((x, "x"), (weight, "weight")):
        reason = _tensor_reason("modulated_conv", t, what)
        if reason:
            return reason
    for t in (weight, bias, attn):
        if t is not None and t.device != x.device:
            return f"triton modulated_conv needs all tensors on {x.device}, got one on {t.device}"
    if attn.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        return f"triton modulated_conv takes a floating-point attn, got {_name(attn.dtype)}"
    cout, cin, k = weight.shape[0], x.shape[1], weight.shape[-1]
    if k % 2 == 0 or k > MAX_CONV_K:
        return f"triton modulated_conv takes odd kernel sizes up to {MAX_CONV_K}, got {k}"
    if groups < 1 or cin % groups or cout % groups:
        return f"triton modulated_conv: groups={groups} must divide Cin={cin} and Cout={cout}"
    if max(x[0].numel() if x.shape[0] else 0, cout * x.shape[2] * x.shape[3]) > _INT32_MAX:
        return "triton modulated_conv: one sample has more than 2³¹ elements"
    return None


def _register() -> None:
    from interir.ops.explainable_conv import define_backend

    define_backend(
        "triton",
        attention=explainable_attention,
        attention_backward=explainable_attention_backward,
        conv=modulated_conv,
        conv_backward=modulated_conv_backward,
        supports=supports,
    )


_register()
