"""The fused CPU kernels of docs/performance.md ("The CPU kernels"): InterIR's per-pixel chains at inference.

interir/cpu_kernels.cpp (beside this file) is compiled for the host's CPU (`-O3 -march=native`, OpenMP) at first use
(interir/cpp_build.py) and cached under TORCH_EXTENSIONS_DIR; the name carries a digest of the source and of the
CPU's identity, so an edited kernel or another CPU gets its own build. The model's modules call `usable(x)` and,
when it holds, the kernel instead of their plain forward:

- `Convs` (Conv1×1 → ReLU → Conv1×1) as one pass;
- the explainable attention's mask and pooling and softmax (`attention`) as one pass, in place of about eight;
- the EPBlock as ln_conv1x1 → its explainable conv → gate_mean + the channel attention's tiny 1×1 →
  gated_residual → ffn: four passes over memory around the 3×3 convolution instead of about twenty.
- the explainable convolution's 3×3 products (groups 1) as Winograd's F(4×2, 3×3), `winograd3x3`: 24 products per
  4×2 output tile instead of 72, within the plain path's float32 error; inputs with a NaN or ±∞ convolve directly.

Training runs the last one too, inside the modulated convolution op (interir/ops/reference.py), where no gradient is
taken: its forward, and its backward as `winograd3x3_backward` (the gradient with respect to x is `winograd3x3` on
the output's gradient; the weight's and the attention's come from the transposed transform, `winograd3x3_grad` in the
C++; docs/performance.md, "The Winograd backward"), except on CPUs where ATen's capability is AVX-512: there oneDNN's
convolutions beat it at training shapes (`winograd_trains`; docs/performance.md, "On an AVX-512 Xeon the Winograd
kernels slow training down").

They run only where they give what the plain path gives, to float round-off (tests/test_cpu_kernels.py):
float32 CPU tensors, no gradient wanted, not under torch.compile / torch.export tracing or CPU autocast, the fast
paths on.

    INTERIR_CPU_KERNELS=auto   (default) use them when they compile; if not, say why once and use the plain path
    INTERIR_CPU_KERNELS=0      never (the path before them, to time or check against)
    INTERIR_CPU_KERNELS=1      always: a build failure is an error
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import platform
import sys
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from interir import cpp_build, fast_paths
from interir.errors import InterIRError

ENV_VAR = "INTERIR_CPU_KERNELS"
SOURCE = Path(__file__).with_suffix(".cpp")  # shipped beside this module (package data)
_MODES = {"": "auto", "auto": "auto", "1": "on", "on": "on", "true": "on", "yes": "on",
          "0": "off", "off": "off", "false": "off", "no": "off"}

_module: ModuleType | None = None
_failure: str | None = None  # why the kernels are unavailable, once known
_forced_off = False          # `disabled()` in effect
_for_autograd = contextvars.ContextVar("interir_cpu_kernels_for_autograd", default=False)  # `for_autograd()` in effect


def mode() -> str:
    """'auto', 'on' or 'off' from INTERIR_CPU_KERNELS; another value is a one-line InterIRError (the CLI reads it
    before any work)."""
    return _parse_mode(os.environ.get(ENV_VAR))


@functools.lru_cache(maxsize=8)
def _parse_mode(raw: str | None) -> str:
    value = (raw or "auto").strip().lower()
    if value not in _MODES:
        raise InterIRError(f"{ENV_VAR}={raw!r}: expected auto, 1 or 0")
    return _MODES[value]


def load() -> ModuleType | None:
    """The compiled kernels, building them at the first call; None (with the reason in `unavailable_reason()`)
    when they cannot be built. With INTERIR_CPU_KERNELS=1 a failure raises InterIRError instead."""
    global _module, _failure
    if _module is None and _failure is None:
        _module, _failure = _build()
        if _failure is not None and mode() != "on":
            print(f"interir: the fused CPU kernels are unavailable ({_failure}); using the plain path "
                  f"({ENV_VAR}=0 silences this)", file=sys.stderr)
    if _failure is not None and mode() == "on":
        raise InterIRError(f"{ENV_VAR}=1 but the CPU kernels are unavailable: {_failure}")
    return _module


def _build() -> tuple[ModuleType | None, str | None]:
    """(the module, None) or (None, why not)."""
    if not SOURCE.is_file():
        return None, f"{SOURCE} is missing from this installation"
    # -march=native: the name carries the CPU's identity too, so a cache shared by several machines never hands
    # one a build with instructions it lacks
    name = f"interir_cpu_kernels_{cpp_build.digest(SOURCE.read_bytes(), _cpu_identity())}"
    if not cpp_build.verbose() and not cpp_build.is_built(name):
        print("interir: compiling the CPU kernels for this machine (once, about a minute; then cached)",
              file=sys.stderr)
    try:
        # -fopenmp: at::parallel_for's OpenMP loop is inlined from ATen's headers
        return cpp_build.build(name, [SOURCE], cflags=["-O3", "-march=native", "-std=c++20", "-fopenmp"],
                               ldflags=["-fopenmp"]), None
    except cpp_build.BuildFailed as exc:
        return None, str(exc)


def _cpu_identity() -> bytes:
    """The machine type and, on Linux, the CPU's model and feature flags."""
    ident = platform.machine().encode()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags", "Features")):
                ident += line.encode()
                if line.startswith(("flags", "Features")):
                    break
    except OSError:
        pass
    return ident


def status() -> str:
    """One line for `interir info`: whether inference on this CPU runs the fused kernels, and if not, why. It never
    builds them: before the first float32 CPU inference of the process it says so."""
    if mode() == "off":
        return f"off ({ENV_VAR}=0)"
    if not fast_paths.enabled():
        return f"off (the fast paths are off: {fast_paths.ENV_VAR}=0)"
    if _failure is not None:
        return f"unavailable ({_failure}); the plain path runs"
    if _module is None:
        return "not built in this process yet (built, or loaded from the cache, at the first float32 CPU inference)"
    return "on (float32 inference; built for this CPU)"


def unavailable_reason() -> str | None:
    """Why the kernels could not be built, once `load()` has tried; None otherwise."""
    return _failure


def usable(*tensors: Tensor) -> bool:
    """Whether the module holding these tensors may run its fused CPU kernel: float32 plain CPU tensors, no
    gradient wanted, no tracing, no CPU autocast, no dispatch mode watching (FlopCounterMode), fast paths on,
    INTERIR_CPU_KERNELS not 0, and the kernels built."""
    # tracing first: Dynamo would trace into mode()'s cache wrapper (and warn) for an answer that is no anyway;
    # and FlopCounterMode & co. must see the plain ops the kernels skip
    if not fast_paths.unobserved():
        return False
    if _forced_off or mode() == "off" or not fast_paths.enabled() or torch.is_grad_enabled():
        return False
    if torch.is_autocast_enabled("cpu"):  # the plain modules run in the autocast dtype; the kernels only in float32
        return False
    for t in tensors:  # a parameter's requires_grad does not matter with grad off; a FakeTensor is neither type
        if type(t) not in (Tensor, torch.nn.Parameter) or t.device.type != "cpu" or t.dtype != torch.float32:
            return False
    return load() is not None


@functools.lru_cache(maxsize=1)
def winograd_trains() -> bool:
    """Whether the modulated convolution's calls for autograd (training) take the Winograd kernels on this CPU: not
    where ATen's CPU capability is AVX-512, whose oneDNN convolutions are faster at the training shapes (measured in
    docs/performance.md, "On an AVX-512 Xeon the Winograd kernels slow training down"). Inference takes them on
    every CPU."""
    return not torch.backends.cpu.get_cpu_capability().upper().startswith("AVX512")


@contextlib.contextmanager
def for_autograd():
    """Marks the calls inside as made for autograd: the modulated convolution's op and its backward op
    (interir/ops/explainable_conv.py). Inference calls the op's function directly, outside it."""
    token = _for_autograd.set(True)
    try:
        yield
    finally:
        _for_autograd.reset(token)


def winograd_usable(*tensors: Tensor) -> bool:
    """`usable(*tensors)`, and for a call made for autograd, `winograd_trains()`."""
    return usable(*tensors) and (not _for_autograd.get() or winograd_trains())


class disabled:
    """`with cpu_kernels.disabled(): ...` runs the plain path inside the block (as INTERIR_CPU_KERNELS=0)."""

    def __enter__(self):
        global _forced_off
        self._before, _forced_off = _forced_off, True
        return self

    def __exit__(self, *exc):
        global _forced_off
        _forced_off = self._before
        return False


def _flat(weight: Tensor) -> Tensor:
    """A 1×1 convolution's cout×cin×1×1 weight as a contiguous cout×cin float32 matrix."""
    return weight.detach().reshape(weight.shape[0], -1).contiguous()


def _vec(t: Tensor) -> Tensor:
    return t.detach().reshape(-1).contiguous()


def _new_output(*shape: int) -> Tensor:
    """Where every kernel's output comes from (the tests fill it with NaN, so an element a kernel never writes
    shows)."""
    return torch.empty(shape, dtype=torch.float32)


def convs(block, x: Tensor) -> Tensor:
    """A `Convs` block (Conv1×1 → ReLU → Conv1×1) of x: B×cin×H×W → B×cout×H×W."""
    first, last = block[0], block[2]
    x = x.contiguous()
    y = _new_output(x.shape[0], last.out_channels, x.shape[2], x.shape[3])
    _module.convs(x, _flat(first.weight), _vec(first.bias), _flat(last.weight), _vec(last.bias), y)
    return y


def attention(x: Tensor, theta: float, k: int, tau: float) -> Tensor:
    """The explainable attention without grad (reference.attention_without_grad): x B×C×H×W → B×C×k×k."""
    x = x.contiguous()
    attn = _new_output(x.shape[0], x.shape[1], k, k)
    _module.attention(x, theta, k, tau, attn)
    return attn


def winograd3x3(x: Tensor, weight: Tensor, bias: Tensor | None, attn: Tensor | None = None, *,
                adjoint: bool = False) -> Tensor | None:
    """The 3×3 convolution (stride 1, padding 1) of each sample with its own kernels, by Winograd's F(4×2, 3×3).

    x B×cin×H×W, bias cout or None → B×cout×H×W. The kernels: weight B×cout×cin×3×3 (attn None), or the modulated
    convolution's K_b = W ⊙ A_b from weight cout×cin×3×3 and attn B×cin×3×3, built inside the kernel's transform.
    adjoint: convolve with each K_b transposed and flipped instead (x B×cout×H×W → B×cin×H×W): the gradient with
    respect to the input of the convolution by K_b. None (the caller convolves as before) when x or a kernel holds a
    NaN or an infinity: the transforms would spread it over whole 4×2 tiles."""
    x = x.contiguous()
    channels = weight.shape[-3] if adjoint else weight.shape[-4]
    y = _new_output(x.shape[0], channels, x.shape[2], x.shape[3])
    bias = torch.zeros(channels) if bias is None else _vec(bias)
    attn = None if attn is None else attn.detach().contiguous()
    return y if _module.winograd3x3(x, weight.detach().contiguous(), attn, adjoint, bias, y) else None


def winograd3x3_backward(
    grad_y: Tensor, x: Tensor, weight: Tensor, attn: Tensor
) -> tuple[Tensor, Tensor, Tensor] | None:
    """(dx, dweight, dattn) of the modulated 3×3 convolution y = conv(x, K_b), K_b = W ⊙ A_b (groups 1, padding 1),
    by Winograd's F(4×2, 3×3) (docs/performance.md, "The Winograd backward"): grad_y B×cout×H×W, x B×cin×H×W,
    weight cout×cin×3×3, attn B×cin×3×3 → B×cin×H×W, cout×cin×3×3, B×cin×3×3.
    dx is the forward kernel run on grad_y with each K_b transposed and flipped (`adjoint`); dweight and dattn come
    from the kernel gradients summed in the transform domain. None (the caller takes the direct gradients) when an
    input holds a NaN or an infinity."""
    weight, attn = weight.detach().contiguous(), attn.detach().contiguous()
    dx = winograd3x3(grad_y, weight, None, attn, adjoint=True)
    if dx is None:
        return None
    dweight = _new_output(*weight.shape)
    dattn = _new_output(*attn.shape)
    if not _module.winograd3x3_grad(x.detach().contiguous(), grad_y.detach().contiguous(), weight, attn, dweight,
                                    dattn):
        return None
    return dx, dweight, dattn


def epblock(block, x: Tensor) -> Tensor:
    """An EPBlock (docs/model.md) of x: B×c×H×W → B×c×H×W. With an explainable 3×3 convolution (groups 1, not
    recording its explanation) that the reference backend serves, the whole block is one C++ call; otherwise its 3×3
    convolution runs as the block's own module between the kernels."""
    x = x.contiguous()
    conv, n1 = block.conv2, block.norm1
    y = _new_output(*x.shape)
    if _in_one_call(conv):
        bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
        if _module.epblock(x, n1.weight, n1.bias, n1.eps, block.conv1.weight, block.conv1.bias, conv.weight, bias,
                           float(conv.theta), conv.tau, *_tail_weights(block), y):
            return y  # else a NaN or ±∞ reached the 3×3 convolution: the module path below convolves it directly
    b, c, h, w = x.shape
    u = _new_output(b, 2 * c, h, w)
    _module.ln_conv1x1(x, _vec(n1.weight), _vec(n1.bias), n1.eps, _flat(block.conv1.weight), _vec(block.conv1.bias), u)
    _module.epblock_tail(x, conv(u).contiguous(), *_tail_weights(block), y)
    return y


def _tail_weights(block) -> tuple:
    """The EPBlock's tensors after its 3×3 convolution, in the order the C++ `epblock_tail` takes them."""
    sca, n2 = block.sca[1], block.norm2
    return (sca.weight, sca.bias, block.conv3.weight, block.conv3.bias, block.beta, n2.weight, n2.bias, n2.eps,
            block.conv4.weight, block.conv4.bias, block.conv5.weight, block.conv5.bias, block.gamma)


def _in_one_call(conv) -> bool:
    """Whether `epblock` may run the block's 3×3 convolution inside its one C++ call: an ExplainableConv (it has a
    θ) of kernel 3, groups 1, one θ, not recording its explanation, on the reference backend."""
    from interir.ops import backends  # here: interir.ops imports this module

    return (getattr(conv, "record", None) is False and getattr(conv, "kernel_size", None) == 3
            and getattr(conv, "groups", None) == 1 and conv.theta.numel() == 1 and backends.reference_serves("cpu"))


__all__ = ["ENV_VAR", "mode", "load", "status", "unavailable_reason", "usable", "disabled", "convs", "attention",
           "winograd3x3", "winograd3x3_backward", "winograd_trains", "for_autograd", "winograd_usable", "epblock"]
