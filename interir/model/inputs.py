"""Input checks and padding shared by the restoration networks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from interir.errors import InterIRError


def check_image_batch(x, channels: int, network: str) -> None:
    """Raise InterIRError (one line) unless x is a finite, non-empty, floating B×channels×H×W tensor.

    The NaN/Inf scan is skipped on the meta device and inside torch.compile traces.
    """
    if not isinstance(x, Tensor):
        raise InterIRError(f"{network} expects a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise InterIRError(f"{network} expects a 4-D B×{channels}×H×W tensor, got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise InterIRError(f"{network} expects {channels} channels, got {x.shape[1]} (shape {tuple(x.shape)})")
    if not x.is_floating_point():
        raise InterIRError(f"{network} expects a floating-point image in [0, 1], got dtype {x.dtype}")
    if min(x.shape[0], x.shape[2], x.shape[3]) == 0:
        raise InterIRError(f"{network} got an empty tensor of shape {tuple(x.shape)}")
    if x.device.type != "meta" and not torch.compiler.is_compiling() and not bool(torch.isfinite(x).all()):
        raise InterIRError(f"{network} input contains NaN or Inf values")


def pad_bottom_right(x: Tensor, height: int, width: int) -> Tensor:
    """Pad B×C×H×W to height×width at the bottom/right: reflect, or replicate when the image is too small."""
    ph, pw = height - x.shape[-2], width - x.shape[-1]
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if x.shape[-2] > ph and x.shape[-1] > pw else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)
