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


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad B×C×H×W at the bottom/right to multiples of `multiple` (pad_bottom_right's rule)."""
    return pad_bottom_right(x, x.shape[-2] + (-x.shape[-2]) % multiple, x.shape[-1] + (-x.shape[-1]) % multiple)


def pad_bottom_right(x: Tensor, height: int, width: int) -> Tensor:
    """Pad B×C×H×W to height×width at the bottom/right: reflect, or replicate when the image is too small."""
    ph, pw = height - x.shape[-2], width - x.shape[-1]
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if x.shape[-2] > ph and x.shape[-1] > pw else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def in_network_dtype(network: torch.nn.Module, forward, x: Tensor, *args, **kwargs):
    """forward(x, ...) with x in the network's own floating-point dtype, results returned in x's dtype.

    A float64 image into a float32 network (or float32 into a .double() one) is converted instead of failing
    deep inside a convolution; under autocast the input is left as it is.
    """
    own = next((p.dtype for p in network.parameters() if p.is_floating_point()), x.dtype)
    if x.dtype == own or torch.is_autocast_enabled(x.device.type):
        return forward(x, *args, **kwargs)
    result = forward(x.to(own), *args, **kwargs)

    def back(value):
        if isinstance(value, Tensor):
            return value.to(x.dtype)
        if isinstance(value, (list, tuple)):
            return type(value)(back(v) for v in value)
        return value

    return back(result)


def check_finite_output(y: Tensor, network: str = "the model") -> Tensor:
    """Raise InterIRError unless every value of a network's output is finite (returns y)."""
    if not bool(torch.isfinite(y).all()):
        raise InterIRError(f"{network}'s output holds NaN or Inf values (are the checkpoint's weights broken?); "
                           f"nothing was written")
    return y
