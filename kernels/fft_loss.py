"""Triton kernels of the frequency loss (docs/model.md, "Loss"): one rfft2 of the difference, one fused reduction.

Forward: d = pred − target in float32, D = rfft2(d) (…×H×Wh complex, Wh = ⌊W/2⌋+1), then `_half_l1_kernel`
reads D as float32 pairs (Re, Im) in one flat pass: program i owns BLOCK consecutive numbers, weighs each
|·| by its column (columns 1 … ⌈W/2⌉−1 have a mirror twin in the missing half and count twice; column 0
and, for even W, column W/2 count once), writes one float32 partial sum and, when backward will need it,
the int8 sign of every number (made exactly Hermitian in columns 0 and W/2, see the kernel). A second,
one-program kernel sums the partials in a fixed order and divides by 2·numel: the full-spectrum FSNet
mean, deterministic, no atomics. The imaginary parts at the
self-conjugate frequencies (row 0 or H/2 × column 0 or W/2) are exactly 0 for real input; the kernel counts
them as 0 and gives them sign 0, so float noise there neither enters the loss nor the gradient.

Backward (from the saved signs, no second FFT of the inputs): `_sign_spectrum_kernel` turns the signs into
the half spectrum S·g/(2·numel) (float32 pairs) in one pass, and irfft2(·, s=(H, W), norm="forward") gives
∂L/∂d directly: the inverse real transform already counts the twinned columns twice, which is exactly the
derivative of the weighted half-spectrum sum, and it equals the reference Re(HW·ifft2(sgn Re D + i·sgn Im D))
/(2·numel). dpred = ∂L/∂d, dtarget = −∂L/∂d.

For the backend table (the op contract of interir/ops/fft_loss.py, docs/ops.md): `forward(pred, target, keep)`
returns (loss, signs), the signs only when `keep` (a gradient will be asked for), and `backward(grad, pred,
target, signs)` uses them. Float32 inside whatever the input dtype; float64 goes to the reference.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from interir.kernels._launch import DTYPES, device_reason, new_output, sum_partials
from interir.kernels._tuning import Tuning



@dataclass(frozen=True)
class FftConfig:
    """Numbers (Re or Im) per program of the reduction and of the sign expansion."""

    BLOCK: int
    num_warps: int = 4

    def __str__(self) -> str:
        return f"BLOCK{self.BLOCK}_w{self.num_warps}"


# Candidates; tests run each one alone. CONFIGS[0] is the interpreter's, CONFIGS[2] the GPU's.
CONFIGS = (FftConfig(256, 2), FftConfig(1024, 4), FftConfig(4096, 8))
TUNING = Tuning("fft_l1_loss", CONFIGS, heuristic=lambda key: CONFIGS[2])


def pick_config(config=None) -> FftConfig:
    return TUNING.choose((), config)


@triton.jit
def _half_l1_kernel(spec_ptr, signs_ptr, part_ptr, n, H, W, WH, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    idx = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = idx < n
    v = tl.load(spec_ptr + idx, mask=valid, other=0.0)
    is_im = (idx % 2) == 1
    pos = idx // 2                      # complex index
    col = pos % WH
    row = (pos // WH) % H
    self_col = (col == 0) | (col * 2 == W)  # column 0, or W/2 for even W
    self_row = (row == 0) | (row * 2 == H)  # row 0, or H/2 for even H
    dead = is_im & self_col & self_row  # Im of a self-conjugate frequency: exactly 0 for real input
    weight = tl.where(self_col, 1.0, 2.0)
    weight = tl.where(dead | (idx >= n), 0.0, weight)
    part = tl.sum(tl.abs(v) * weight, axis=0)
    tl.store(part_ptr + pid, part)
    # The signs are always computed (into scratch when the caller does not keep them): one compiled kernel,
    # so the loss is bitwise the same whether or not the backward's signs are kept (a kernel specialised
    # without them was measured on an H200 to sum in another order).
    # Columns 0 and W/2 hold both D[k, l] and its twin D[H−k, l] = conj(D[k, l]): rows past H/2 take the
    # sign of their twin (Re the same, Im negated), so the sign spectrum is exactly Hermitian and the
    # inverse real FFT is well defined on every FFT library, even where a value is float noise around 0.
    mirror = valid & self_col & (row > H // 2)
    twin = tl.load(spec_ptr + idx + (H - 2 * row) * (WH * 2), mask=mirror, other=0.0)
    twin = tl.where(is_im, -twin, twin)
    u = tl.where(mirror, twin, v)
    s = tl.where(u > 0, 1, tl.where(u < 0, -1, 0))
    s = tl.where(dead, 0, s)
    tl.store(signs_ptr + idx, s.to(tl.int8), mask=valid)


@triton.jit
def _sign_spectrum_kernel(signs_ptr, grad_ptr, out_ptr, n, inv_count, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    idx = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = idx < n
    s = tl.load(signs_ptr + idx, mask=valid, other=0).to(tl.float32)
    scale = tl.load(grad_ptr).to(tl.float32) * inv_count
    tl.store(out_ptr + idx, s * scale, mask=valid)


def _half_shape(shape) -> tuple:
    return (*shape[:-1], shape[-1] // 2 + 1, 2)


def _forward(pred: Tensor, target: Tensor, keep_signs: bool, config=None) -> tuple[Tensor, Tensor]:
    """(loss: 0-dim float32, signs: int8 …×H×Wh×2, or an empty tensor when not kept)."""
    cfg = pick_config(config)
    dev = pred.device
    loss = new_output((), torch.float32, dev)
    signs_shape = _half_shape(pred.shape) if keep_signs else (0,)
    signs = new_output(signs_shape, torch.int8, dev)
    if pred.numel() == 0:
        return loss.fill_(float("nan")), signs
    d = pred.to(torch.float32) - target.to(torch.float32)
    spec = torch.view_as_real(torch.fft.rfft2(d))  # …×H×Wh×2 float32
    partials = reduce_half_spectrum(spec, d.shape[-1], signs if keep_signs else None, cfg)
    sum_partials(partials, loss, 1.0 / (2 * d.numel()))
    return loss, signs


def reduce_half_spectrum(spec: Tensor, width: int, signs: Tensor | None = None, config=None) -> Tensor:
    """Per-program partial sums of the weighted |Re|+|Im| of a half spectrum `spec` (…×H×Wh×2 float32 pairs,
    Wh = width//2 + 1), writing the int8 signs into `signs` (same shape) when given. Returns the partials."""
    cfg = pick_config(config)
    spec = spec.contiguous()
    n = spec.numel()
    grid = (triton.cdiv(n, cfg.BLOCK),)
    partials = new_output((grid[0],), torch.float32, spec.device)
    if signs is None:
        signs = torch.empty(spec.shape, dtype=torch.int8, device=spec.device)  # scratch: see the kernel
    _half_l1_kernel[grid](spec, signs, partials, n, spec.shape[-3], width, width // 2 + 1, BLOCK=cfg.BLOCK,
                          num_warps=cfg.num_warps)
    return partials


def _backward(grad_loss: Tensor, signs: Tensor, width: int, config=None) -> Tensor:
    """∂L/∂d (float32, …×H×W) from the saved signs: irfft2 of the sign half spectrum scaled by g/(2·numel)."""
    cfg = pick_config(config)
    dev = signs.device
    hh = signs.shape[-3]
    count = signs[..., 0, 0, 0].numel() * hh * width
    spec = new_output(signs.shape, torch.float32, dev)
    n = spec.numel()
    if n == 0:
        return torch.zeros((*signs.shape[:-2], width), dtype=torch.float32, device=dev)
    grad = grad_loss.reshape(1).to(device=dev).contiguous()
    _sign_spectrum_kernel[(triton.cdiv(n, cfg.BLOCK),)](signs, grad, spec, n, 1.0 / (2 * count),
                                                        BLOCK=cfg.BLOCK, num_warps=cfg.num_warps)
    return torch.fft.irfft2(torch.view_as_complex(spec), s=(hh, width), norm="forward")


# ------------------------------------------------------------------------------------------ functions


def saved_like(pred: Tensor, target: Tensor, keep: bool) -> Tensor:
    """An empty tensor shaped like what `forward` keeps for backward: the int8 signs, or nothing."""
    return pred.new_empty(_half_shape(pred.shape) if keep else (0,), dtype=torch.int8)


def forward(pred: Tensor, target: Tensor, keep: bool) -> tuple[Tensor, Tensor]:
    """(loss, signs kept for `backward` when `keep`): the backend contract's forward (docs/ops.md)."""
    return _forward(pred.contiguous(), target.contiguous(), keep)


def backward(grad_loss: Tensor, pred: Tensor, target: Tensor, saved: Tensor) -> tuple[Tensor, Tensor]:
    """(dpred, dtarget) from the signs `forward` kept (recomputed when it kept none)."""
    if saved.numel() == 0:
        return fft_l1_loss_backward(grad_loss, pred, target)
    dd = _backward(grad_loss, saved.contiguous(), pred.shape[-1])
    return dd.to(pred.dtype), (-dd).to(target.dtype)


def fft_l1_loss(pred: Tensor, target: Tensor, *, config=None) -> Tensor:
    """The loss (0-dim float32) as reference.fft_l1_loss, with an explicit config (tests, tuning)."""
    return _forward(pred.contiguous(), target.contiguous(), False, config)[0]


def fft_l1_loss_backward(grad_loss: Tensor, pred: Tensor, target: Tensor, *, config=None) -> tuple[Tensor, Tensor]:
    """(dpred, dtarget) as reference.fft_l1_loss_backward, recomputing the signs with the forward kernel."""
    _, signs = _forward(pred.contiguous(), target.contiguous(), True, config)
    dd = _backward(grad_loss, signs, pred.shape[-1], config)
    return dd.to(pred.dtype), (-dd).to(target.dtype)


def why_not(pred: Tensor, target: Tensor, keep: bool = False) -> str | None:
    """None if the kernels can compute fft_l1_loss(pred, target), else a one-line reason."""
    return device_reason("triton fft_l1_loss", (pred, target), DTYPES)
