"""Triton kernels of the Kronecker-factored operator (docs/model.md) and the fused RESM gradient step.

Every product here is a chain of two small matrix products per (b, c): Out = L·Mid·R with
L: M×K, Mid: K×P, R: P×N, Out: M×N (each an h×h, h×w, w×w or w×h matrix, or the transpose of one, given
by strides). One kernel, `_chain_kernel`, computes all of them. Its grid is (B·C, ⌈M/BM⌉, ⌈N/BN⌉): a
program owns one BM×BN output tile of one (b, c) and loops over the middle dimension P in BP-blocks,

    for each BP-block p:   U = L[tile rows, :] · Mid[:, p]          (loop over K in BK-blocks)
                           acc += U · R[p, tile columns]

as flash attention chains S = Q·Kᵀ into P·V: the intermediate U (BM×BP) is the left operand of the
second product and stays in registers with the accumulator (BM×BN); it never goes to global memory. The
price is that U is recomputed for every column tile (⌈N/BN⌉ times; once when N ≤ BN). All blocks are ≥ 16
(tl.dot's minimum); edges and sizes from 1 up are handled by masks (masked loads read 0, masked stores
write nothing). Accumulation is float32; for float32 inputs the dots are IEEE float32 (no TF32, matching
torch.matmul's default), for bfloat16/float16 inputs U is rounded to the input dtype before the second
product, as the reference's intermediate is.

An epilogue (constexpr) fuses the elementwise work around the chain:
    PLAIN     Out = acc, or −η·acc (NEG_ETA)                                    (P(X), Pᵀ(X), all gradients)
    STEP      Out = X − η·(acc + R)                                             (kron_step forward)
    STEP_BWD  V = acc + R; partial[program] = Σ_tile dO⊙V; dX = dO; dR = −η·dO  (kron_step backward, part 1)
dη = −Σ partials is then summed by one program in a fixed order: no floating-point atomics anywhere, and
each output element is computed by one program in a fixed order, so results are bitwise reproducible.

float64 is not supported (the `supports` check says so; `auto` then uses the reference backend).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from interir.kernels._launch import DTYPES, device_reason, new_output, sum_partials, tensors_reason
from interir.kernels._tuning import Tuning


PLAIN, STEP, STEP_BWD = 0, 1, 2


@dataclass(frozen=True)
class KronConfig:
    """Block sizes of `_chain_kernel`: output tile BM×BN, blocks BK of the inner reduction (over K) and BP of
    the outer one (over P, the intermediate's width)."""

    BM: int
    BN: int
    BK: int
    BP: int
    num_warps: int = 4
    num_stages: int = 2

    def __str__(self) -> str:
        return f"BM{self.BM}_BN{self.BN}_BK{self.BK}_BP{self.BP}_w{self.num_warps}_s{self.num_stages}"


# Candidates for autotuning; tests run each one alone. The heuristic's two choices compile without a register
# spill for sm_80/90/100/120 with Triton 3.6 and 3.9 at every recorded size (16² to 256² maps, odd ones included:
# masked edges cost registers; `interir check --static`). Float32 runs IEEE dots on the CUDA cores, which hold
# whole operand tiles in registers: 32×16 tiles with 16-wide reduction blocks on 4 warps, one stage. 16-bit
# inputs use 32×32 tiles with 16-wide reduction blocks on 4 warps; wider blocks spilled on sm_100/sm_120.
# Triton 3.2 aborts compiling 64-row tiles of 16-bit inputs on 8 warps for sm_90 (a LinearLayout
# assertion): 64-row configs use 4 warps.
CONFIGS = (
    KronConfig(16, 16, 16, 16, num_warps=2, num_stages=1),
    KronConfig(32, 32, 32, 32, num_warps=4, num_stages=2),
    KronConfig(32, 16, 16, 16, num_warps=4, num_stages=1),
    KronConfig(64, 64, 64, 64, num_warps=4, num_stages=2),
    KronConfig(128, 64, 32, 64, num_warps=8, num_stages=2),
    KronConfig(32, 32, 16, 16, num_warps=4, num_stages=2),
    KronConfig(32, 32, 32, 32, num_warps=8, num_stages=2),
)


def _gpu_config(key: tuple) -> KronConfig:
    """A fixed choice by dtype (deterministic, so results never depend on timing); key: (M, N, dtype)."""
    return CONFIGS[2] if key[2] == torch.float32 else CONFIGS[5]


# the interpreter: small tiles, so that many programs and masked edges get exercised and numpy stays quick
TUNING = Tuning("kron", CONFIGS, _gpu_config,
                interpreter=lambda key: CONFIGS[0] if max(key[0], key[1]) <= 16 else CONFIGS[1])


def pick_config(m: int, n: int, dtype: torch.dtype, config=None) -> KronConfig:
    """The config for an M×N output: `config` if given (a KronConfig or an index into CONFIGS), else the
    tuning's choice (kernels/_tuning.py)."""
    return TUNING.choose((m, n, dtype), config)


@triton.jit
def _chain_kernel(
    l_ptr, mid_ptr, r_ptr, out_ptr,           # Out = L · Mid · R
    e1_ptr, e2_ptr, e3_ptr, part_ptr, eta_ptr,  # epilogue operands (laid out like Out)
    M, N, K, P,
    s_lb, s_lm, s_lk,
    s_mb, s_mk, s_mp,
    s_rb, s_rp, s_rn,
    s_ob, s_om, s_on,
    EPILOGUE: tl.constexpr, NEG_ETA: tl.constexpr, IEEE: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, BP: tl.constexpr,
):
    bc = tl.program_id(0).to(tl.int64)
    pid_m = tl.program_id(1)
    pid_n = tl.program_id(2)
    offs_m = pid_m * BM + tl.arange(0, BM)
    offs_n = pid_n * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    rp = tl.arange(0, BP)
    mask_m = offs_m < M
    mask_n = offs_n < N

    l_base = l_ptr + bc * s_lb
    mid_base = mid_ptr + bc * s_mb
    r_base = r_ptr + bc * s_rb

    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for p0 in range(0, P, BP):
        ps = p0 + rp
        mask_p = ps < P
        # U = L[m-block, :] · Mid[:, p-block], kept on chip (the left operand of the second product)
        u = tl.zeros((BM, BP), dtype=tl.float32)
        for k0 in range(0, K, BK):
            ks = k0 + rk
            mask_k = ks < K
            a = tl.load(l_base + offs_m[:, None] * s_lm + ks[None, :] * s_lk,
                        mask=mask_m[:, None] & mask_k[None, :], other=0.0)
            mid = tl.load(mid_base + ks[:, None] * s_mk + ps[None, :] * s_mp,
                          mask=mask_k[:, None] & mask_p[None, :], other=0.0)
            if IEEE:
                u += tl.dot(a, mid, input_precision="ieee")
            else:
                u += tl.dot(a, mid)
        r = tl.load(r_base + ps[:, None] * s_rp + offs_n[None, :] * s_rn,
                    mask=mask_p[:, None] & mask_n[None, :], other=0.0)
        if IEEE:
            acc += tl.dot(u, r, input_precision="ieee")
        else:
            acc += tl.dot(u.to(r.dtype), r)

    mask = mask_m[:, None] & mask_n[None, :]
    o_off = bc * s_ob + offs_m[:, None] * s_om + offs_n[None, :] * s_on
    if EPILOGUE == 0:  # PLAIN
        if NEG_ETA:
            acc = acc * (-tl.load(eta_ptr).to(tl.float32))
        tl.store(out_ptr + o_off, acc.to(out_ptr.dtype.element_ty), mask=mask)
    elif EPILOGUE == 1:  # STEP: Out = X − η·(acc + R)
        eta = tl.load(eta_ptr).to(tl.float32)
        x = tl.load(e1_ptr + o_off, mask=mask, other=0.0).to(tl.float32)
        res = tl.load(e2_ptr + o_off, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_ptr + o_off, (x - eta * (acc + res)).to(out_ptr.dtype.element_ty), mask=mask)
    else:  # STEP_BWD: partial Σ dO⊙V, dX = dO (Out), dR = −η·dO (e3)
        eta = tl.load(eta_ptr).to(tl.float32)
        g_raw = tl.load(e1_ptr + o_off, mask=mask, other=0.0)
        g = g_raw.to(tl.float32)
        res = tl.load(e2_ptr + o_off, mask=mask, other=0.0).to(tl.float32)
        part = tl.sum(tl.sum(g * (acc + res), axis=1), axis=0)
        pid = (bc * tl.num_programs(1) + pid_m) * tl.num_programs(2) + pid_n
        tl.store(part_ptr + pid, part)
        tl.store(out_ptr + o_off, g_raw, mask=mask)
        tl.store(e3_ptr + o_off, (-eta * g).to(e3_ptr.dtype.element_ty), mask=mask)


class _Mat:
    """A batch of matrices seen through strides: (tensor, batch stride, row stride, column stride, rows, cols)."""

    def __init__(self, t: torch.Tensor, sb: int, sr: int, sc: int, rows: int, cols: int):
        self.t, self.sb, self.sr, self.sc, self.rows, self.cols = t, sb, sr, sc, rows, cols

    @classmethod
    def of(cls, t: torch.Tensor) -> "_Mat":
        """A contiguous B×C×r×c tensor as B·C matrices r×c."""
        rows, cols = t.shape[-2], t.shape[-1]
        return cls(t, rows * cols, cols, 1, rows, cols)

    @property
    def T(self) -> "_Mat":
        return _Mat(self.t, self.sb, self.sc, self.sr, self.cols, self.rows)


def _chain(left: _Mat, mid: _Mat, right: _Mat, out: _Mat, *, epilogue=PLAIN, neg_eta=False, e1=None, e2=None,
           e3=None, partials=None, eta=None, config=None, grid=None) -> None:
    """Launch Out = Left·Mid·Right (+ epilogue) over the B·C matrices of `out`."""
    m, k = left.rows, left.cols
    p, n = right.rows, right.cols
    assert mid.rows == k and mid.cols == p and out.rows == m and out.cols == n
    bc = out.t.numel() // max(m * n, 1)
    cfg = pick_config(m, n, out.t.dtype, config)
    if grid is None:
        grid = (bc, triton.cdiv(m, cfg.BM), triton.cdiv(n, cfg.BN))
    dummy = out.t
    _chain_kernel[grid](
        left.t, mid.t, right.t, out.t,
        e1 if e1 is not None else dummy, e2 if e2 is not None else dummy, e3 if e3 is not None else dummy,
        partials if partials is not None else dummy, eta if eta is not None else dummy,
        m, n, k, p,
        left.sb, left.sr, left.sc,
        mid.sb, mid.sr, mid.sc,
        right.sb, right.sr, right.sc,
        out.sb, out.sr, out.sc,
        EPILOGUE=epilogue, NEG_ETA=neg_eta, IEEE=out.t.dtype == torch.float32 and left.t.dtype == torch.float32,
        BM=cfg.BM, BN=cfg.BN, BK=cfg.BK, BP=cfg.BP, num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )


def _prep(*tensors: torch.Tensor, dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    dtype = dtype or tensors[0].dtype
    return [t.to(dtype).contiguous() for t in tensors]


def _empty_batch(x: torch.Tensor) -> bool:
    return x.numel() == 0


# ------------------------------------------------------------------------------------------------ public


def kron_apply(x, p1, p2, transpose: bool = False, *, config=None):
    """P(X) = P1·X·P2, or P1ᵀ·X·P2ᵀ when `transpose`; one fused kernel. Signature of reference.kron_apply."""
    x, p1, p2 = _prep(x, p1, p2)
    out = new_output(x.shape, x.dtype, x.device)
    if _empty_batch(x):
        return out
    a, b = _Mat.of(p1), _Mat.of(p2)
    if transpose:
        a, b = a.T, b.T
    _chain(a, _Mat.of(x), b, _Mat.of(out), config=config)
    return out


def kron_apply_backward(grad_y, x, p1, p2, transpose: bool = False, *, config=None):
    """(dx, dp1, dp2) of kron_apply: with Y = A·X·B, dX = Aᵀ·dY·Bᵀ, dA = dY·Bᵀ·Xᵀ, dB = Xᵀ·Aᵀ·dY."""
    x, p1, p2, g = _prep(x, p1, p2, grad_y)
    dx = new_output(x.shape, x.dtype, x.device)
    dp1 = new_output(p1.shape, p1.dtype, p1.device)
    dp2 = new_output(p2.shape, p2.dtype, p2.device)
    if _empty_batch(x):
        return dx, dp1, dp2
    a, b = _Mat.of(p1), _Mat.of(p2)
    mx, mg = _Mat.of(x), _Mat.of(g)
    da, db = _Mat.of(dp1), _Mat.of(dp2)
    if transpose:  # A = P1ᵀ, B = P2ᵀ, and dP1 = dAᵀ, dP2 = dBᵀ: write through transposed strides
        a, b, da, db = a.T, b.T, da.T, db.T
    _chain(a.T, mg, b.T, _Mat.of(dx), config=config)
    _chain(mg, b.T, mx.T, da, config=config)
    _chain(mx.T, a.T, mg, db, config=config)
    return dx, dp1, dp2


def _eta_of(eta: torch.Tensor, device) -> torch.Tensor:
    return eta.reshape(1).to(device=device).contiguous()


def kron_step(x, f, gram1, gram2, r, eta, *, config=None):
    """X − η·(G1·F·G2 + R) in one kernel (the chain with the step as its epilogue)."""
    x, f, gram1, gram2, r = _prep(x, f, gram1, gram2, r)
    out = new_output(x.shape, x.dtype, x.device)
    if _empty_batch(x):
        return out
    _chain(_Mat.of(gram1), _Mat.of(f), _Mat.of(gram2), _Mat.of(out), epilogue=STEP, e1=x, e2=r,
           eta=_eta_of(eta, x.device), config=config)
    return out


def kron_step_backward(grad_out, f, gram1, gram2, r, eta, *, config=None):
    """(dx, df, dgram1, dgram2, dr, deta) of kron_step; dη from per-program partials, summed in a fixed order."""
    f, gram1, gram2, r, g = _prep(f, gram1, gram2, r, grad_out)
    dev = f.device
    e = _eta_of(eta, dev)
    dx = new_output(f.shape, f.dtype, dev)
    df = new_output(f.shape, f.dtype, dev)
    dg1 = new_output(gram1.shape, gram1.dtype, dev)
    dg2 = new_output(gram2.shape, gram2.dtype, dev)
    dr = new_output(f.shape, f.dtype, dev)
    deta = new_output(eta.shape, eta.dtype, dev)
    if _empty_batch(f):
        return dx, df, dg1, dg2, dr, deta.zero_().to(eta.device)
    m1, m2, mf, mg = _Mat.of(gram1), _Mat.of(gram2), _Mat.of(f), _Mat.of(g)
    h, w = f.shape[-2], f.shape[-1]
    cfg = pick_config(h, w, f.dtype, config)
    grid = (f.numel() // (h * w), triton.cdiv(h, cfg.BM), triton.cdiv(w, cfg.BN))
    partials = new_output((grid[0] * grid[1] * grid[2],), torch.float32, dev)
    # V = G1·F·G2 + R recomputed on chip: partial Σ dO⊙V per program, plus dX = dO and dR = −η·dO
    _chain(m1, mf, m2, _Mat.of(dx), epilogue=STEP_BWD, e1=g, e2=r, e3=dr, partials=partials, eta=e,
           config=cfg, grid=grid)
    _chain(m1.T, mg, m2.T, _Mat.of(df), neg_eta=True, eta=e, config=config)   # −η·G1ᵀ·dO·G2ᵀ
    _chain(mg, m2.T, mf.T, _Mat.of(dg1), neg_eta=True, eta=e, config=config)  # −η·dO·G2ᵀ·Fᵀ
    _chain(mf.T, m1.T, mg, _Mat.of(dg2), neg_eta=True, eta=e, config=config)  # −η·Fᵀ·G1ᵀ·dO
    sum_partials(partials, deta, -1.0)
    return dx, df, dg1, dg2, dr, deta.to(eta.device)


def apply_why_not(x, p1, p2, transpose) -> str | None:
    """None if the kernels can compute kron_apply(x, p1, p2, transpose), else a one-line reason."""
    return tensors_reason("triton kron_apply", [x, p1, p2], DTYPES)


def step_why_not(x, f, gram1, gram2, r, eta) -> str | None:
    """None if the kernels can compute kron_step(...); η is a float32 scalar whatever the data dtype."""
    reason = device_reason("triton kron_step", [eta], (torch.float32, torch.float64))
    return reason or tensors_reason("triton kron_step", [x, f, gram1, gram2, r], DTYPES)
