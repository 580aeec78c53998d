"""The op benchmark cases: their shapes, the bytes and flops each one moves and does, and the calls that run them.

Shapes are InterIR's own (see interir/model/interir.py): the network works on maps of side image/4, the
explainable convs run over 2C = 96 channels (every EPBlock of RESM and MUM; 117 of the paper model's 149) and
4C = 192 channels (DMUM's), the Kronecker operator over C = 48 channels with h = w = image/4, and the FFT
loss on the 3-channel output image.

- training: batch 32 of 256² patches: explainable conv 32×C×64×64 for C = 48, 96, 192; Kronecker ops
  32×48×64×64 (P1, P2: 32×48×64×64); FFT loss 32×3×256×256;
- inference: batch 1 at 256², 512², 1024², 2048²: explainable conv 1×96×s/4×s/4, Kronecker 1×48×s/4×s/4,
  FFT loss 1×3×s×s.

CPU rule (unless full_shapes): training batch 32 → 4, and the 2048² inference cases are skipped (recorded).

Work per case (B batch, C channels, H×W map, k = 3, h×w Kronecker sides, N = H·W, e bytes per element):

- flops, "useful" only (what a perfect kernel must do; attention, masks and epilogues not counted):
  explainable conv  fwd 2·B·C·H·W·C·k² (Cin = Cout = C);  fwd+bwd 3× (dx and the weight gradient are a
                    conv each);
  kron_apply/step   fwd 2·B·C·(h·w² + h²·w) (X·P2, then P1·(X·P2));  fwd+bwd 4× (dX, dP1, dP2 one
                    forward's worth each);
  fft_l1_loss       fwd 5·N·log2(N) per B·C plane (one 2-D FFT, the usual complex-FFT count);  fwd+bwd 2×
                    (one inverse FFT).
- bytes, the minimum any implementation moves: every input read once plus every output written once.
  fwd: the op's inputs + its output; fwd+bwd: additionally the output gradient (read) and a gradient for
  every input (written). Activations and weights are in the case's dtype; θ, η and the loss are float32.

fwd runs the op under torch.no_grad(); fwd+bwd runs it with every float input requiring grad and calls
torch.autograd.grad(output, inputs, ones) (the gradients of output.sum()).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from interir import ops

OPS = ("explainable_conv", "kron_apply", "kron_step", "fft_l1_loss")
DIRECTIONS = ("fwd", "fwd+bwd")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
FLOOR = "floor"  # method name of the plain shared-weight conv, the physical floor of the explainable conv

SCALE = 4  # InterIR's internal maps are the image side / 4 (PixelUnshuffle 4)
TRAIN_BATCH, TRAIN_PATCH = 32, 256
INFER_SIDES = (256, 512, 1024, 2048)
EXPLAINABLE_TRAIN_CHANNELS = (48, 96, 192)
EXPLAINABLE_INFER_CHANNELS = 96
KRON_CHANNELS = 48
IMAGE_CHANNELS = 3
KERNEL_SIZE = 3
CPU_TRAIN_BATCH = 4
CPU_MAX_INFER_SIDE = 1024
# smoke: the same structure at tiny sizes
SMOKE_TRAIN_BATCH, SMOKE_SIDE, SMOKE_CHANNELS = 2, 32, 8


@dataclass(frozen=True)
class OpCase:
    """One op at one shape. `skip` is why it does not run on this device (None: it runs)."""

    op: str
    regime: str  # "train" or "infer"
    batch: int
    channels: int
    height: int
    width: int
    image_side: int  # the model input side (training patch or inference image) this case stands for
    note: str = ""  # e.g. how the shape was scaled down on CPU
    skip: str | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.channels, self.height, self.width)

    @property
    def label(self) -> str:
        return "×".join(map(str, self.shape))

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape)}

    def methods(self, backends: list[str]) -> list[str]:
        """The timed methods of this case: each backend, plus the plain conv floor for the explainable conv."""
        return list(backends) + ([FLOOR] if self.op == "explainable_conv" else [])


def element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def flops(case: OpCase, direction: str) -> int:
    """Useful floating-point operations of one call (see the module doc)."""
    b, c, h, w = case.shape
    if case.op == "explainable_conv":
        fwd = 2 * b * c * h * w * c * KERNEL_SIZE**2
        return fwd if direction == "fwd" else 3 * fwd
    if case.op in ("kron_apply", "kron_step"):
        fwd = 2 * b * c * (h * w * w + h * h * w)
        return fwd if direction == "fwd" else 4 * fwd
    if case.op == "fft_l1_loss":
        n = h * w
        fwd = round(5 * n * math.log2(n) * b * c)
        return fwd if direction == "fwd" else 2 * fwd
    raise KeyError(case.op)


def bytes_moved(case: OpCase, direction: str, dtype: torch.dtype) -> int:
    """Minimum bytes of one call: inputs read once, outputs written once (see the module doc)."""
    e, f32 = element_size(dtype), 4
    b, c, h, w = case.shape
    act = b * c * h * w
    if case.op == "explainable_conv":
        inputs = (act + c * c * KERNEL_SIZE**2 + c) * e + f32  # x, weight, bias; θ
        output = act * e
    elif case.op == "kron_apply":
        inputs = (act + b * c * h * h + b * c * w * w) * e  # x, P1, P2
        output = act * e
    elif case.op == "kron_step":
        inputs = (3 * act + b * c * h * h + b * c * w * w) * e + f32  # x, F, R, G1, G2; η
        output = act * e
    elif case.op == "fft_l1_loss":
        inputs = 2 * act * e  # pred, target
        output = f32
    else:
        raise KeyError(case.op)
    fwd = inputs + output
    return fwd if direction == "fwd" else 2 * fwd  # + output gradient read, + input gradients written


def op_cases(device_type: str, *, smoke: bool = False, full_shapes: bool = False,
             op_names: tuple = OPS) -> list[OpCase]:
    """Every case of the requested ops for a device ('cpu' or 'cuda'), skipped ones included."""
    if smoke:
        train_batch, train_side, sides = SMOKE_TRAIN_BATCH, SMOKE_SIDE, (SMOKE_SIDE,)
        conv_train, conv_infer, kron_c, note = (SMOKE_CHANNELS,), SMOKE_CHANNELS, SMOKE_CHANNELS // 2, "smoke size"
    else:
        train_batch, train_side, sides = TRAIN_BATCH, TRAIN_PATCH, INFER_SIDES
        conv_train, conv_infer, kron_c, note = EXPLAINABLE_TRAIN_CHANNELS, EXPLAINABLE_INFER_CHANNELS, KRON_CHANNELS, ""
    scale_cpu = device_type == "cpu" and not full_shapes and not smoke
    train_note = note
    if scale_cpu:
        train_batch, train_note = CPU_TRAIN_BATCH, f"batch {TRAIN_BATCH} → {CPU_TRAIN_BATCH} on CPU"
    cases: list[OpCase] = []
    for op in op_names:
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}; choose from {', '.join(OPS)}")
        m = train_side // SCALE
        if op == "explainable_conv":
            cases += [OpCase(op, "train", train_batch, c, m, m, train_side, train_note) for c in conv_train]
        elif op in ("kron_apply", "kron_step"):
            cases.append(OpCase(op, "train", train_batch, kron_c, m, m, train_side, train_note))
        else:
            cases.append(OpCase(op, "train", train_batch, IMAGE_CHANNELS, train_side, train_side, train_side,
                                train_note))
        for side in sides:
            skip = None
            if scale_cpu and side > CPU_MAX_INFER_SIDE:
                skip = (f"CPU: inference shapes above {CPU_MAX_INFER_SIDE}² are skipped (together they would add "
                        f"minutes to a CPU run); --full-shapes runs them")
            m = side // SCALE
            if op == "explainable_conv":
                cases.append(OpCase(op, "infer", 1, conv_infer, m, m, side, note, skip))
            elif op in ("kron_apply", "kron_step"):
                cases.append(OpCase(op, "infer", 1, kron_c, m, m, side, note, skip))
            else:
                cases.append(OpCase(op, "infer", 1, IMAGE_CHANNELS, side, side, side, note, skip))
    return cases


# ------------------------------------------------------------------------------------------------ running
def make_inputs(case: OpCase, dtype: torch.dtype, device: torch.device, requires_grad: bool,
                seed: int = 0) -> dict[str, Tensor]:
    """Realistic random inputs of the op, every float one requiring grad when `requires_grad`."""
    gen = torch.Generator(device=device).manual_seed(seed)

    def randn(*shape, scale: float = 1.0, dt: torch.dtype = dtype) -> Tensor:
        return (torch.randn(*shape, generator=gen, device=device) * scale).to(dt)

    b, c, h, w = case.shape
    if case.op == "explainable_conv":
        k = KERNEL_SIZE
        t = {"x": randn(b, c, h, w), "weight": randn(c, c, k, k, scale=(c * k * k) ** -0.5),
             "bias": randn(c, scale=0.1), "theta": torch.full((1,), 0.1, device=device)}
    elif case.op == "kron_apply":
        t = {"x": randn(b, c, h, w), "p1": randn(b, c, h, h, scale=1 / h), "p2": randn(b, c, w, w, scale=1 / w)}
    elif case.op == "kron_step":
        p1, p2 = randn(b, c, h, h, scale=1 / h, dt=torch.float32), randn(b, c, w, w, scale=1 / w, dt=torch.float32)
        gram1, gram2 = ops.kron_gram(p1, p2)
        t = {"x": randn(b, c, h, w), "f": randn(b, c, h, w), "gram1": gram1.to(dtype), "gram2": gram2.to(dtype),
             "r": randn(b, c, h, w), "eta": torch.full((1,), 0.01, device=device)}
    elif case.op == "fft_l1_loss":
        t = {"pred": torch.rand(b, c, h, w, generator=gen, device=device).to(dtype),
             "target": torch.rand(b, c, h, w, generator=gen, device=device).to(dtype)}
    else:
        raise KeyError(case.op)
    if requires_grad:
        for v in t.values():
            v.requires_grad_(True)
    return t


def output_gradient(case: OpCase, inputs: dict[str, Tensor]) -> Tensor:
    """The gradient fed to backward: ones shaped like the output (the gradient of output.sum())."""
    if case.op == "fft_l1_loss":
        return torch.ones((), device=inputs["pred"].device)
    x = inputs["x"]
    return torch.ones(x.shape, dtype=x.dtype, device=x.device)


def _forward(case: OpCase, t: dict[str, Tensor], method: str) -> Callable[[], Tensor]:
    if case.op == "explainable_conv":
        if method == FLOOR:
            return lambda: F.conv2d(t["x"], t["weight"], t["bias"], padding=KERNEL_SIZE // 2)
        return lambda: ops.explainable_conv(t["x"], t["weight"], t["bias"], t["theta"], backend=method)
    if case.op == "kron_apply":
        return lambda: ops.kron_apply(t["x"], t["p1"], t["p2"], backend=method)
    if case.op == "kron_step":
        return lambda: ops.kron_step(t["x"], t["f"], t["gram1"], t["gram2"], t["r"], t["eta"], backend=method)
    if case.op == "fft_l1_loss":
        return lambda: ops.fft_l1_loss(t["pred"], t["target"], backend=method)
    raise KeyError(case.op)


def make_call(case: OpCase, direction: str, method: str, inputs: dict[str, Tensor],
              grad_output: Tensor | None = None) -> Callable[[], Any]:
    """A zero-argument callable running one `direction` of the op on `method` (a backend, or FLOOR).

    For fwd+bwd, `inputs` must require grad and `grad_output` come from `output_gradient`.
    """
    forward = _forward(case, inputs, method)
    if direction == "fwd":
        def run_forward():
            with torch.no_grad():
                return forward()

        return run_forward
    if direction != "fwd+bwd":
        raise ValueError(f"unknown direction {direction!r}; expected one of {', '.join(DIRECTIONS)}")
    names = ("x", "weight", "bias") if method == FLOOR else tuple(inputs)
    wrt = [inputs[n] for n in names]

    def run_forward_backward():
        return torch.autograd.grad(forward(), wrt, grad_output)

    return run_forward_backward
