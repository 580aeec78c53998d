"""Int8 storage of weights: each kernel as int8 with one float32 scale per output channel (README, `interir pack`).

A tensor W (Cout×…) is stored as q = round(W / s) in [−127, 127] with s[o] = max|W[o]| / 127, and read back as
q·s. That halves a float16 file. Vectors (biases, norms, step sizes) stay float16, and so do the layers a network
names in `full_precision_layers` (InterIR's image-space convolutions, whose errors land on the pixels directly).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from interir.errors import InterIRError

SCALE_SUFFIX = ".int8_scale"


def is_scale_name(name: str) -> bool:
    return name.endswith(SCALE_SUFFIX)


def quantize(w: Tensor) -> tuple[Tensor, Tensor]:
    """Cout×… float tensor → (int8 tensor of the same shape, float32 scales of shape Cout)."""
    w = w.detach().to(torch.float32)
    amax = w.reshape(w.shape[0], -1).abs().amax(1)
    scale = amax / 127
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero channel stays zero
    q = torch.round(w / safe.reshape(-1, *[1] * (w.dim() - 1))).clamp_(-127, 127).to(torch.int8)
    return q, scale


def dequantize(q: Tensor, scale: Tensor) -> Tensor:
    """(int8 Cout×…, float32 Cout) → the float32 tensor q·s."""
    return q.to(torch.float32) * scale.to(torch.float32).reshape(-1, *[1] * (q.dim() - 1))


def pack(state: dict[str, Tensor], keep: Callable[[str], bool]) -> dict[str, Tensor]:
    """A state dict as stored in an int8 file: every floating tensor of 2 or more dimensions whose name `keep`
    does not claim becomes int8 + `<name>.int8_scale`; every other floating tensor float16; the rest unchanged.
    Non-finite weights are an InterIRError (int8 cannot hold them)."""
    out: dict[str, Tensor] = {}
    for name, t in state.items():
        if is_scale_name(name):
            raise InterIRError(f"cannot store {name!r} in an int8 file: names ending in {SCALE_SUFFIX!r} are reserved")
        if not t.is_floating_point():
            out[name] = t
            continue
        if not bool(torch.isfinite(t).all()):
            raise InterIRError(f"{name} holds NaN or Inf values: the weights are broken and cannot be stored")
        if t.dim() >= 2 and t.shape[0] > 0 and not keep(name):
            out[name], out[name + SCALE_SUFFIX] = quantize(t)
        else:
            out[name] = t.detach().to(torch.float16)
    return out


def unpack(stored: dict[str, Tensor], where: str) -> dict[str, Tensor]:
    """The state dict an int8 file holds, its kernels dequantized to float32. A scale without its tensor, an
    int8 tensor without its scale, or a scale of the wrong shape is an InterIRError naming `where`."""
    out: dict[str, Tensor] = {}
    for name, t in stored.items():
        if is_scale_name(name):
            base = name[: -len(SCALE_SUFFIX)]
            if base not in stored:
                raise InterIRError(f"{where} is damaged: scale {name} has no tensor {base}")
            continue
        scale = stored.get(name + SCALE_SUFFIX)
        if t.dtype == torch.int8:
            if scale is None:
                raise InterIRError(f"{where} is damaged: int8 tensor {name} has no scale {name}{SCALE_SUFFIX}")
            if t.dim() < 1 or tuple(scale.shape) != (t.shape[0],) or not scale.is_floating_point():
                raise InterIRError(f"{where} is damaged: scale {name}{SCALE_SUFFIX} has shape {tuple(scale.shape)}, "
                                   f"expected ({t.shape[0]},) floats")
            out[name] = dequantize(t, scale)
        elif scale is not None:
            raise InterIRError(f"{where} is damaged: {name} is {t.dtype}, but has an int8 scale")
        else:
            out[name] = t
    return out


def logical_names(names: Iterable[str]) -> list[str]:
    """The tensor names of a file without its scale entries."""
    return [n for n in names if not is_scale_name(n)]


__all__ = ["SCALE_SUFFIX", "quantize", "dequantize", "pack", "unpack", "logical_names", "is_scale_name"]
