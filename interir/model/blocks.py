"""Building blocks of InterIR (docs/model.md): LayerNorm2d, Convs, ExplainableConv and EPBlock (a NAFNet block)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from interir import cpu_kernels, fast_paths, ops


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a B×C×H×W map, computed in float32 whatever the input dtype."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        acc = torch.promote_types(x.dtype, torch.float32)
        xa = x.to(acc)
        mu = xa.mean(1, keepdim=True)
        var = (xa - mu).pow(2).mean(1, keepdim=True)
        y = (xa - mu) * torch.rsqrt(var + self.eps)
        y = y * self.weight.to(acc).view(1, -1, 1, 1) + self.bias.to(acc).view(1, -1, 1, 1)
        return y.to(x.dtype)


class SimpleGate(nn.Module):
    """NAFNet's gate: split the channels in two halves and multiply them (2c → c)."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class Convs(nn.Sequential):
    """`Convs` of docs/model.md: Conv1×1(cin → e·cout) → ReLU → Conv1×1(e·cout → cout).

    With cin = cout = c this is exactly the Conv1×1(c→e·c) → ReLU → Conv1×1(e·c→c); for the
    concatenated inputs (cin = 2c → c) the hidden width is e·cout (choice).
    """

    def __init__(self, cin: int, cout: int, expand: int = 8):
        super().__init__(nn.Conv2d(cin, expand * cout, 1), nn.ReLU(inplace=True), nn.Conv2d(expand * cout, cout, 1))

    def forward(self, x: Tensor) -> Tensor:
        if cpu_kernels.usable(x, self[0].weight):  # one pass, the hidden map kept in cache (docs/performance.md)
            return cpu_kernels.convs(self, x)
        return super().forward(x)


class ExplainableConv(nn.Module):
    """ExplainableConv(cin, cout, k) of docs/model.md: a shared kernel modulated per sample by its own attention.

    x: B×cin×H×W → B×cout×H×W (stride 1, 'same' padding). θ (learnable, init 0) thresholds the input into
    a binary mask whose k×k pooled fractions give the tap attention A = k²·softmax(p). With `record` set,
    the last forward keeps its explanation: `last_attention` (B×cin×k×k) and `last_mask` (B×1×H×W, the
    channel mean of the mask).
    """

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, groups: int = 1, bias: bool = True, tau: float = 0.5):
        super().__init__()
        if not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or kernel_size % 2 != 1:
            raise ValueError(f"ExplainableConv: kernel_size must be an odd integer, got {kernel_size!r}")
        if cin % groups or cout % groups:
            raise ValueError(f"ExplainableConv: groups={groups} must divide cin={cin} and cout={cout}")
        self.in_channels, self.out_channels, self.kernel_size, self.groups, self.tau = cin, cout, kernel_size, groups, tau
        self.weight = nn.Parameter(torch.empty(cout, cin // groups, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(cout)) if bias else None
        self.theta = nn.Parameter(torch.zeros(1))
        self.record = False
        self.last_attention: Tensor | None = None
        self.last_mask: Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # the initialisation of nn.Conv2d, so that ablations with a plain conv start from the same law
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        y, attn = ops.explainable_conv(
            x, self.weight, self.bias, self.theta, tau=self.tau, groups=self.groups, return_attention=True
        )
        if self.record:
            self.last_attention = attn.detach()
            self.last_mask = ops.explainable_mask(x, self.theta).detach()
        return y

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, groups={self.groups}, "
                f"tau={self.tau}, bias={self.bias is not None}")


def spatial_conv(c: int, *, explainable: bool, depthwise: bool, tau: float) -> nn.Module:
    """The 3×3 conv of an EPBlock over c channels: explainable or plain, full or depthwise."""
    groups = c if depthwise else 1
    if explainable:
        return ExplainableConv(c, c, 3, groups=groups, tau=tau)
    return nn.Conv2d(c, c, 3, padding=1, groups=groups)


class EPBlock(nn.Module):
    """EPBlock(c) of docs/model.md: a NAFNet block whose 3×3 conv (over 2c channels) is an ExplainableConv.

    x: B×c×H×W → B×c×H×W. Both residual branches are scaled by β, γ (init 0), so a new block is the identity.
    """

    def __init__(self, c: int, *, explainable: bool = True, depthwise: bool = False, tau: float = 0.5):
        super().__init__()
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, 2 * c, 1)
        self.conv2 = spatial_conv(2 * c, explainable=explainable, depthwise=depthwise, tau=tau)
        self.gate = SimpleGate()
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c, 1))
        self.conv3 = nn.Conv2d(c, c, 1)
        self.norm2 = LayerNorm2d(c)
        self.conv4 = nn.Conv2d(c, 2 * c, 1)
        self.conv5 = nn.Conv2d(c, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if cpu_kernels.usable(x, self.conv1.weight):  # the per-pixel chains fused (docs/performance.md)
            return cpu_kernels.epblock(self, x)
        y = self.gate(self.conv2(self.conv1(self.norm1(x))))
        y = self.conv3(y * self.sca(y))
        x = _add_scaled(x, y, self.beta)
        y = self.conv5(self.gate(self.conv4(self.norm2(x))))
        return _add_scaled(x, y, self.gamma)


def _add_scaled(x: Tensor, y: Tensor, scale: Tensor) -> Tensor:
    """x + y·scale (scale: 1×C×1×1), one fused pass when the fast paths are on and x, y share a dtype."""
    if fast_paths.enabled() and x.dtype == y.dtype:
        return torch.addcmul(x, y, scale.to(y.dtype))
    return x + y * scale.to(y.dtype)


def frobenius_normalize(m: Tensor, eps: float = 1e-6) -> Tensor:
    """nf of docs/model.md (Init): each (b, c) matrix of a B×C×n×n tensor divided by its Frobenius norm (+eps).

    Computed in float32 at least (float64 stays float64), whatever the autocast state.
    """
    ma = m.to(torch.promote_types(m.dtype, torch.float32))
    return ma / (torch.linalg.matrix_norm(ma).unsqueeze(-1).unsqueeze(-1) + eps)


__all__ = ["LayerNorm2d", "SimpleGate", "Convs", "ExplainableConv", "EPBlock", "spatial_conv", "frobenius_normalize"]
