"""The fixed cases `interir check` proves every backend on: odd sizes, non-contiguous inputs and the
networks' own shapes (the EPBlock convs and Kronecker maps of the `small` and `paper` presets at a 256² patch),
for each op, through its public front-end."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from interir import ops


@dataclass(frozen=True)
class Case:
    op: str
    name: str
    front: Callable  # the public function, called as front(*args, backend=...)
    make: Callable[[torch.device, torch.dtype, bool], tuple]  # (device, dtype, reduced sizes?) -> arguments
    quick: bool = False  # part of --quick


def _sizes(h: int, w: int, reduced: bool) -> tuple[int, int]:
    """The map size a case runs at: under emulation, the networks' 64² maps shrink to 16² (odd sizes stay)."""
    return (16 if reduced and h >= 64 else h), (16 if reduced and w >= 64 else w)


def _randn(*shape, device, dtype, permute=None):
    """Normal values; with `permute`, a non-contiguous view made by permuting a tensor of the permuted shape."""
    if permute is None:
        return torch.randn(*shape, device=device).to(dtype)
    inverse = [permute.index(i) for i in range(len(shape))]
    base = torch.randn(*(shape[i] for i in inverse), device=device).to(dtype)
    return base.permute(*permute)


def _attention(b, c, h, w, k, *, permute=None):
    def make(device, dtype, reduced):
        hh, ww = _sizes(h, w, reduced)
        x = _randn(b, c, hh, ww, device=device, dtype=dtype, permute=permute)
        return x, torch.tensor(0.1, device=device), k, 0.5
    return make


def _conv(b, cin, cout, h, w, k, groups, *, permute=None):
    def make(device, dtype, reduced):
        hh, ww = _sizes(h, w, reduced)
        x = _randn(b, cin, hh, ww, device=device, dtype=dtype, permute=permute)
        weight = torch.randn(cout, cin // groups, k, k, device=device).to(dtype) / math.sqrt(cin // groups * k * k)
        bias = torch.randn(cout, device=device)
        attn = torch.rand(b, cin, k, k, device=device) * 2
        return x, weight, bias, attn, groups
    return make


def _kron(b, c, h, w, transpose, *, permute=None):
    def make(device, dtype, reduced):
        hh, ww = _sizes(h, w, reduced)
        x = _randn(b, c, hh, ww, device=device, dtype=dtype, permute=permute)
        p1 = torch.randn(b, c, hh, hh, device=device).to(dtype) / math.sqrt(hh)
        p2 = torch.randn(b, c, ww, ww, device=device).to(dtype) / math.sqrt(ww)
        return x, p1, p2, transpose
    return make


def _step(b, c, h, w):
    def make(device, dtype, reduced):
        hh, ww = _sizes(h, w, reduced)
        x, f, r = (torch.randn(b, c, hh, ww, device=device).to(dtype) for _ in range(3))
        p1 = torch.randn(b, c, hh, hh, device=device) / math.sqrt(hh)
        p2 = torch.randn(b, c, ww, ww, device=device) / math.sqrt(ww)
        g1, g2 = ops.kron_gram(p1, p2)
        return x, f, g1.to(dtype), g2.to(dtype), r, torch.tensor(0.05, device=device)
    return make


def _loss(b, c, h, w, *, permute=None):
    def make(device, dtype, reduced):
        hh, ww = _sizes(h, w, reduced)
        return (_randn(b, c, hh, ww, device=device, dtype=dtype, permute=permute),
                _randn(b, c, hh, ww, device=device, dtype=dtype))
    return make


# The networks' own shapes at a 256² patch (maps of 64²): the EPBlock 3×3 conv runs over 2C channels.
SMALL_C, PAPER_C = 32, 48
CASES: tuple[Case, ...] = (
    Case("explainable_attention", "odd 2×5×13×11, k 3", ops.explainable_attention, _attention(2, 5, 13, 11, 3), True),
    Case("explainable_attention", "k 5, 1×3×9×7", ops.explainable_attention, _attention(1, 3, 9, 7, 5)),
    Case("explainable_attention", "non-contiguous 2×6×17×9", ops.explainable_attention,
         _attention(2, 6, 17, 9, 3, permute=(0, 3, 1, 2))),
    Case("explainable_attention", f"small: 2×{2 * SMALL_C}×64×64", ops.explainable_attention,
         _attention(2, 2 * SMALL_C, 64, 64, 3)),
    Case("explainable_attention", f"paper: 4×{2 * PAPER_C}×64×64", ops.explainable_attention,
         _attention(4, 2 * PAPER_C, 64, 64, 3)),
    Case("modulated_conv", "odd 2×5→7×13×11, k 3", ops.modulated_conv, _conv(2, 5, 7, 13, 11, 3, 1), True),
    Case("modulated_conv", "k 5, 1×4→6×9×7", ops.modulated_conv, _conv(1, 4, 6, 9, 7, 5, 1)),
    Case("modulated_conv", "groups 2, 2×6→4×11×10", ops.modulated_conv, _conv(2, 6, 4, 11, 10, 3, 2)),
    Case("modulated_conv", "depthwise 2×8×12×9", ops.modulated_conv, _conv(2, 8, 8, 12, 9, 3, 8)),
    Case("modulated_conv", "non-contiguous 2×6→5×10×13", ops.modulated_conv,
         _conv(2, 6, 5, 10, 13, 3, 1, permute=(0, 3, 1, 2))),
    Case("modulated_conv", f"small: 2×{2 * SMALL_C}→{2 * SMALL_C}×64×64", ops.modulated_conv,
         _conv(2, 2 * SMALL_C, 2 * SMALL_C, 64, 64, 3, 1)),
    Case("modulated_conv", f"paper: 4×{2 * PAPER_C}→{2 * PAPER_C}×64×64", ops.modulated_conv,
         _conv(4, 2 * PAPER_C, 2 * PAPER_C, 64, 64, 3, 1)),
    Case("kron_apply", "odd 2×3×13×11", ops.kron_apply, _kron(2, 3, 13, 11, False), True),
    Case("kron_apply", "odd transpose 2×3×7×12", ops.kron_apply, _kron(2, 3, 7, 12, True)),
    Case("kron_apply", "non-contiguous 2×4×9×10", ops.kron_apply, _kron(2, 4, 9, 10, False, permute=(0, 1, 3, 2))),
    Case("kron_apply", f"small: 2×{SMALL_C}×64×64", ops.kron_apply, _kron(2, SMALL_C, 64, 64, True)),
    Case("kron_apply", f"paper: 4×{PAPER_C}×64×64", ops.kron_apply, _kron(4, PAPER_C, 64, 64, True)),
    Case("kron_step", "odd 2×3×13×11", ops.kron_step, _step(2, 3, 13, 11), True),
    Case("kron_step", f"paper: 4×{PAPER_C}×64×64", ops.kron_step, _step(4, PAPER_C, 64, 64)),
    Case("fft_l1_loss", "odd 2×3×37×53", ops.fft_l1_loss, _loss(2, 3, 37, 53), True),
    Case("fft_l1_loss", "non-contiguous 2×3×20×17", ops.fft_l1_loss, _loss(2, 3, 20, 17, permute=(0, 1, 3, 2))),
    Case("fft_l1_loss", "paper: 8×3×256×256", ops.fft_l1_loss, _loss(8, 3, 256, 256)),
)
