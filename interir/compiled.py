"""A network compiled once by torch.compile (inductor) for restoring many images: `interir restore --compile`.

On a CPU the three ops run inlined as their plain-PyTorch reference (interir.ops.backends.inline), so inductor
sees the element-wise work around them and fuses it, and the weights are frozen into the compiled graph
(inductor's `freezing`: constant folding and prepacked convolution weights). On a GPU the ops stay the
backends' custom ops. The first call compiles (about a minute for `small` on 2 cores); a second input size
compiles once more, into a graph with dynamic sizes that then serves every size (torch.compile's automatic
dynamic shapes). Tiled restoration feeds equal tiles, so a folder of large photos compiles once.
The padding to the model's multiple runs eagerly before the graph (as the model pads), so symbolic sizes are
always multiples; a compiler failure prints one line and the eager network restores the image instead.
docs/performance.md has the measured speed-up and compile times.

    net = CompiledNetwork(model)      # model: a RestorationModel in eval mode
    y = net(x)                        # x: B×3×H×W in [0, 1] → the network's output, without gradients
"""
from __future__ import annotations

import contextlib
import sys

import torch
from torch import Tensor, nn

from interir.export import pool_by_matrices
from interir.ops import backends
from interir.ops import reference as ref
from interir.tiling import model_multiple, pad_to_multiple


def _attention(x: Tensor, theta: Tensor, kernel_size: int, tau: float) -> Tensor:
    """The reference attention without grad (interir.ops.reference.attention_without_grad), pooled by
    matrices built from the sizes (interir.export.pool_by_matrices), so the graph does not specialise on H, W."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    return ref.attention_without_grad(x.to(acc), theta.to(acc), kernel_size, tau, pool=pool_by_matrices)


# the ops as plain PyTorch: what inductor may fuse (the reference's own functions, the attention pooled by matrices)
INLINE_TABLE = {
    "explainable_attention": _attention,
    "modulated_conv": ref.modulated_conv,
    "kron_apply": ref.kron_apply,
    "kron_step": ref.kron_step,
}


class CompiledNetwork:
    """`model` compiled for inference; call it like the model. Its input check runs eagerly before the
    compiled graph (it reads tensor values, which a graph cannot), and `padding_multiple` is the model's."""

    def __init__(self, model: nn.Module):
        self.model = model.eval()
        self.padding_multiple = model_multiple(model)
        self._check = getattr(model, "check_input", None)
        device = next(model.parameters()).device
        self._on_cpu = device.type == "cpu"
        self._checks_were = getattr(model, "validate_inputs", None)
        if self._checks_were is not None:
            model.validate_inputs = False  # checked here, before the graph
        self._compiled = torch.compile(model, options={"freezing": True} if self._on_cpu else None)
        self._failed: str | None = None  # why compiling failed, after which the eager model runs

    def __call__(self, x: Tensor) -> Tensor:
        if self._check is not None and self._checks_were:
            self._check(x)
        # the padding to the model's multiple happens here, eagerly, exactly as the model pads (and its crop
        # after): the graph then only sees multiples, whose symbolic sizes need no modular arithmetic
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x, self.padding_multiple)
        with torch.no_grad():
            if self._failed is None:
                inline = backends.inline(INLINE_TABLE) if self._on_cpu else contextlib.nullcontext()
                try:
                    with inline:
                        return self._compiled(padded)[..., :h, :w]
                except Exception as exc:  # a compiler failure must not cost the user their images
                    self._failed = " ".join(str(exc).split())[:200] or type(exc).__name__
                    print(f"interir: --compile failed ({self._failed}); the network runs eagerly", file=sys.stderr)
            return self.model(padded)[..., :h, :w]

    def release(self) -> nn.Module:
        """The eager model back, its input checks as they were."""
        if self._checks_were is not None:
            self.model.validate_inputs = self._checks_were
        return self.model


__all__ = ["CompiledNetwork", "INLINE_TABLE"]
