"""The fused CPU kernels (interir/cpu_kernels.py, interir/cpu_kernels.cpp; docs/performance.md) against the plain
modules: each kernel and the whole network, within float32 round-off of a float64 evaluation of the same modules,
on shapes that fall off every tile (pixels not a multiple of the pixel block, 16 on AVX2 and 64 on AVX-512,
channels not a multiple of the 6-row tile), with NaN-filled outputs so that an element a kernel never writes shows."""
from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch

from interir import cpu_kernels, fast_paths, ops
from interir.errors import InterIRError
from interir.model import build_model
from interir.model.blocks import Convs, EPBlock
from interir.ops import reference

pytestmark = pytest.mark.skipif(cpu_kernels.mode() == "off", reason="INTERIR_CPU_KERNELS=0")


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    """Every kernel output starts as NaN."""
    monkeypatch.setattr(cpu_kernels, "_new_output", lambda *shape: torch.full(shape, float("nan")))


@pytest.fixture(scope="module")
def kernels():
    module = cpu_kernels.load()
    if module is None:
        pytest.skip(f"the CPU kernels could not be built here: {cpu_kernels.unavailable_reason()}")
    return module


def randomize(module: torch.nn.Module, std: float = 0.3) -> torch.nn.Module:
    """Non-trivial weights everywhere (β and γ start at zero, which would hide a residual branch). The explainable
    convolutions' thresholds θ go far below every value: the attention's mask 1[x > θ] is discontinuous, so a
    value within round-off of θ would flip between any two float paths (the attention kernel has its own tests,
    on identical inputs, below)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.full_like(p, -1e4) if name.endswith("theta") else torch.randn(p.shape, generator=gen) * std)
    return module.eval()


def fast_and_plain(fn, *args):
    """fn(*args) without grad, with the kernels and without them."""
    with torch.no_grad():
        fast = fn(*args)
        with cpu_kernels.disabled():
            return fast, fn(*args)


def assert_within_roundoff(fast: torch.Tensor, module: torch.nn.Module, x: torch.Tensor, floor: float = 1e-6):
    """`fast` (float32 kernels) is as close to the float64 evaluation of `module` as its float32 plain path is,
    up to 4× that error plus a floor of `floor` times the output's scale."""
    with torch.no_grad(), cpu_kernels.disabled():
        plain = module(x)
        exact = copy.deepcopy(module).double()(x.double())
    assert not torch.isnan(fast).any(), "an output element was never written"
    scale = exact.abs().max().item()
    plain_err = (plain.double() - exact).abs().max().item()
    fast_err = (fast.double() - exact).abs().max().item()
    assert fast_err <= 4 * plain_err + floor * scale, (fast_err, plain_err, scale)


SHAPES = [(1, 8, 8), (2, 7, 9), (3, 45, 61), (1, 64, 64), (2, 1, 65)]


@pytest.mark.parametrize("cin, cout, expand", [(32, 32, 8), (10, 5, 8), (13, 7, 3), (96, 48, 8)])
@pytest.mark.parametrize("b, h, w", SHAPES)
def test_convs_kernel(kernels, cin, cout, expand, b, h, w):
    block = randomize(Convs(cin, cout, expand))
    x = torch.randn(b, cin, h, w)
    with torch.no_grad():
        assert cpu_kernels.usable(x, block[0].weight)
        fast = block(x)
    assert_within_roundoff(fast, block, x)


@pytest.mark.parametrize("c", [32, 5, 7, 48])
@pytest.mark.parametrize("b, h, w", SHAPES)
def test_epblock_kernels(kernels, c, b, h, w):
    block = randomize(EPBlock(c))
    x = torch.randn(b, c, h, w)
    with torch.no_grad():
        fast = block(x)
    assert_within_roundoff(fast, block, x)


@pytest.mark.parametrize("b, h, w", [(2, 7, 9), (1, 34, 33)])
def test_the_epblock_in_one_call_equals_its_module_path_bit_for_bit(kernels, monkeypatch, b, h, w):
    """The one C++ call makes the module path's kernel calls in the same order, so its output is identical; it is
    taken (the explainable convolution's module never runs) unless the convolution records its explanation."""
    block = randomize(EPBlock(10))
    block.conv2.theta.data.fill_(0.1)  # a mask that is neither all ones nor all zeros
    calls = []
    block.conv2.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(b, 10, h, w)
    with torch.no_grad():
        one_call = block(x)
        assert calls == []
        block.conv2.record = True
        recorded = block(x)
        assert calls == [1] and block.conv2.last_attention is not None
        block.conv2.record = False
        monkeypatch.setattr(cpu_kernels, "_in_one_call", lambda conv: False)
        modules = block(x)
    assert len(calls) == 2
    assert torch.equal(one_call, modules) and torch.equal(one_call, recorded)


@pytest.mark.parametrize("variant", [dict(explainable=False), dict(explainable=False, depthwise=True)])
def test_epblock_kernels_with_the_ablations_spatial_convs(kernels, variant):
    block = randomize(EPBlock(12, **variant))
    x = torch.randn(2, 12, 19, 23)
    with torch.no_grad():
        fast = block(x)
    assert_within_roundoff(fast, block, x)


def test_a_nan_pixel_poisons_what_it_poisons_in_the_plain_path(kernels):
    block = randomize(EPBlock(8), std=0.1)
    x = torch.randn(2, 8, 9, 70)
    x[1, 3, 4, 66] = float("nan")
    fast, plain = fast_and_plain(block, x)
    assert torch.isnan(plain).any() and not torch.isnan(plain[0]).any()
    assert torch.equal(torch.isnan(fast), torch.isnan(plain))
    finite = ~torch.isnan(plain)
    assert torch.allclose(fast[finite], plain[finite], rtol=1e-4, atol=1e-4)


def test_convs_keeps_a_nan_where_relu_keeps_it(kernels):
    block = randomize(Convs(6, 6, 2))
    x = torch.randn(1, 6, 3, 5)
    x[0, 2, 1, 1] = float("nan")
    fast, plain = fast_and_plain(block, x)
    assert torch.equal(torch.isnan(fast), torch.isnan(plain)) and torch.isnan(fast[0, :, 1, 1]).all()


def direct_conv(x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Each sample convolved with its own 3×3 kernel (padding 1) by torch's direct convolution, in x's dtype."""
    b = None if bias is None else bias.to(x.dtype)
    return torch.cat([torch.nn.functional.conv2d(x[i:i + 1], kernels[i].to(x.dtype), b, padding=1)
                      for i in range(x.shape[0])])


@pytest.mark.parametrize("cin, cout", [(64, 64), (5, 7), (13, 20), (128, 96)])
@pytest.mark.parametrize("b, h, w", SHAPES + [(1, 1, 1), (2, 2, 35), (1, 34, 33)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_winograd_equals_the_direct_convolution(kernels, cin, cout, b, h, w, with_bias):
    gen = torch.Generator().manual_seed(h * 1000 + w)
    x = torch.randn(b, cin, h, w, generator=gen)
    weights = torch.randn(b, cout, cin, 3, 3, generator=gen) * 0.3
    bias = torch.randn(cout, generator=gen) if with_bias else None
    fast = cpu_kernels.winograd3x3(x, weights, bias)
    assert not torch.isnan(fast).any(), "an output element was never written"
    exact = direct_conv(x.double(), weights.double(), bias)
    plain_err = (direct_conv(x, weights, bias).double() - exact).abs().max().item()
    fast_err = (fast.double() - exact).abs().max().item()
    assert fast_err <= 4 * plain_err + 1e-6 * exact.abs().max().item(), (fast_err, plain_err)


def sample_kernels(weight: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """Each sample's kernels W ⊙ A_b as the reference builds them, B×cout×cin×k×k."""
    return reference._modulated_weight(weight, attn, 1).reshape(attn.shape[0], *weight.shape)


@pytest.mark.parametrize("cin, cout", [(64, 64), (5, 7), (128, 96)])
@pytest.mark.parametrize("b, h, w", [(2, 13, 11), (1, 34, 33), (3, 24, 24)])
def test_winograd_builds_the_modulated_kernels_and_their_adjoint(kernels, cin, cout, b, h, w):
    """Given W and A, the kernel's own K_b = W ⊙ A_b give what the reference's kernels give, bit for bit; `adjoint`
    convolves with each K_b transposed and flipped, the gradient with respect to the input."""
    gen = torch.Generator().manual_seed(h * 1000 + w)
    x, dy = torch.randn(b, cin, h, w, generator=gen), torch.randn(b, cout, h, w, generator=gen)
    weight = torch.randn(cout, cin, 3, 3, generator=gen) * 0.3
    attn = torch.rand(b, cin, 3, 3, generator=gen) + 0.5
    bias = torch.randn(cout, generator=gen)
    kernels = sample_kernels(weight, attn)
    assert torch.equal(cpu_kernels.winograd3x3(x, weight, bias, attn), cpu_kernels.winograd3x3(x, kernels, bias))
    adjoint = kernels.transpose(1, 2).flip((-2, -1))
    fast = cpu_kernels.winograd3x3(dy, weight, None, attn, adjoint=True)
    assert torch.equal(fast, cpu_kernels.winograd3x3(dy, adjoint, None))
    exact = torch.cat([torch.nn.grad.conv2d_input((1, cin, h, w), kernels[i].double(), dy[i:i + 1].double(), padding=1)
                       for i in range(b)])
    plain = torch.cat([torch.nn.grad.conv2d_input((1, cin, h, w), kernels[i], dy[i:i + 1], padding=1)
                       for i in range(b)])
    plain_err = (plain.double() - exact).abs().max().item()
    assert (fast.double() - exact).abs().max().item() <= 4 * plain_err + 1e-6 * exact.abs().max().item()


@pytest.mark.parametrize("adjoint", [False, True])
def test_winograd_declines_kernels_whose_product_overflows(kernels, adjoint):
    """Finite W and A whose product is ±∞ in float32 make a non-finite kernel: the kernel declines, as for a NaN."""
    x, weight, attn = torch.randn(2, 6, 9, 10), torch.randn(6, 6, 3, 3), torch.rand(2, 6, 3, 3)
    weight[4, 1, 2, 0], attn[1, 1, 2, 0] = 3e38, 10.0
    assert torch.isfinite(weight).all() and torch.isfinite(attn).all()
    assert cpu_kernels.winograd3x3(x, weight, None, attn, adjoint=adjoint) is None
    attn[1, 1, 2, 0] = 1.0
    assert cpu_kernels.winograd3x3(x, weight, None, attn, adjoint=adjoint) is not None


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("where", ["input", "kernel"])
def test_winograd_leaves_a_non_finite_value_to_the_direct_convolution(kernels, bad, where):
    """A NaN or ±∞ would spread over whole 4×2 tiles in the transforms: the kernel declines, and the op's
    output has exactly the plain path's non-finite elements."""
    x, weights = torch.randn(1, 6, 9, 10), torch.randn(1, 5, 6, 3, 3)
    (x[0, 2, 4, 4:5] if where == "input" else weights[0, 1, 2, 1, 1:2]).fill_(bad)
    assert cpu_kernels.winograd3x3(x, weights, None) is None
    attn = torch.ones(1, 6, 3, 3)
    fast, plain = fast_and_plain(lambda: reference.modulated_conv(x, weights[0], None, attn))
    assert torch.equal(torch.isnan(fast), torch.isnan(plain)) and torch.equal(torch.isinf(fast), torch.isinf(plain))


def test_the_modulated_convolution_runs_winograd_at_inference(kernels, monkeypatch):
    """The reference op takes the kernel for 3×3, groups 1, no grad, and not otherwise."""
    calls = []
    real = cpu_kernels.winograd3x3
    monkeypatch.setattr(cpu_kernels, "winograd3x3", lambda *a: calls.append(1) or real(*a))
    x, weight, attn = torch.randn(2, 8, 7, 9), torch.randn(8, 8, 3, 3), torch.rand(2, 8, 3, 3)
    with torch.no_grad():
        fast = reference.modulated_conv(x, weight, None, attn)
        assert len(calls) == 1
        reference.modulated_conv(x, weight.reshape(8, 4, 2, 3, 3)[:, :, 0].contiguous(), None, attn, groups=2)
        reference.modulated_conv(x, torch.randn(8, 8, 5, 5), None, torch.rand(2, 8, 5, 5))
        assert len(calls) == 1
    reference.modulated_conv(x, weight.requires_grad_(), None, attn)
    assert len(calls) == 1
    exact = reference.modulated_conv(x.double(), weight.detach().double(), None, attn.double())
    assert (fast.double() - exact).abs().max() < 1e-4


def assert_gradients_within_roundoff(fast, plain, exact, names, floor=1e-6):
    """Each fast gradient is as close to the float64 one as the float32 direct gradient is, up to 4× that error
    plus a floor (`floor` of the gradient's scale), and has every element written."""
    for name, f, p, e in zip(names, fast, plain, exact):
        assert not torch.isnan(f).any(), f"{name}: an element was never written"
        scale = e.abs().max().item()
        plain_err = (p.double() - e).abs().max().item()
        fast_err = (f.double() - e).abs().max().item()
        assert fast_err <= 4 * plain_err + floor * scale, (name, fast_err, plain_err, scale)


@pytest.mark.parametrize("cin, cout", [(64, 64), (5, 7), (13, 20), (128, 96)])
@pytest.mark.parametrize("b, h, w", SHAPES + [(1, 1, 1), (2, 2, 35), (1, 34, 33), (3, 24, 24), (2, 100, 101)])
def test_winograd_backward_equals_the_direct_gradients(kernels, cin, cout, b, h, w):
    """dx, dW and dA of the modulated convolution; (3, 24, 24) and (2, 100, 101) make the kernel work in chunks of
    samples, the last one short."""
    gen = torch.Generator().manual_seed(h * 1000 + w)
    x = torch.randn(b, cin, h, w, generator=gen)
    weight = torch.randn(cout, cin, 3, 3, generator=gen) * 0.3
    attn = torch.rand(b, cin, 3, 3, generator=gen) + 0.5
    grad_y = torch.randn(b, cout, h, w, generator=gen)
    fast = cpu_kernels.winograd3x3_backward(grad_y, x, weight, attn)
    exact = reference.modulated_conv_backward(grad_y.double(), x.double(), weight.double(), attn.double())
    with cpu_kernels.disabled():
        plain = reference.modulated_conv_backward(grad_y, x, weight, attn)
    assert_gradients_within_roundoff(fast, plain, exact, ("dx", "dweight", "dattn"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("where", ["input", "output gradient", "weight", "attention"])
def test_winograd_backward_leaves_a_non_finite_value_to_the_direct_gradients(kernels, bad, where):
    x, weight = torch.randn(2, 6, 9, 10), torch.randn(5, 6, 3, 3)
    attn, grad_y = torch.rand(2, 6, 3, 3), torch.randn(2, 5, 9, 10)
    {"input": x[1, 2, 4, 4:5], "output gradient": grad_y[0, 1, 3, 3:4], "weight": weight[1, 2, 1, 1:2],
     "attention": attn[0, 3, 2, 0:1]}[where].fill_(bad)
    assert cpu_kernels.winograd3x3_backward(grad_y, x, weight, attn) is None
    with torch.no_grad():
        fast = reference.modulated_conv_backward(grad_y, x, weight, attn)
        with cpu_kernels.disabled():
            plain = reference.modulated_conv_backward(grad_y, x, weight, attn)
    for f, p in zip(fast, plain):
        assert torch.equal(torch.isnan(f), torch.isnan(p)) and torch.equal(torch.isinf(f), torch.isinf(p))


def test_the_modulated_convolution_runs_the_winograd_backward_in_training(kernels, monkeypatch):
    """Autograd's backward of the op takes the kernel for float32, 3×3, groups 1, and not for float64 or groups > 1
    (on a CPU where training takes the Winograd kernels: `winograd_trains`, held true here)."""
    monkeypatch.setattr(cpu_kernels, "winograd_trains", lambda: True)
    calls = []
    real = cpu_kernels.winograd3x3_backward
    monkeypatch.setattr(cpu_kernels, "winograd3x3_backward", lambda *a: calls.append(1) or real(*a))
    gen = torch.Generator().manual_seed(0)
    x, weight = torch.randn(2, 8, 7, 9, generator=gen), torch.randn(8, 8, 3, 3, generator=gen)
    attn, grad_y = torch.rand(2, 8, 3, 3, generator=gen), torch.randn(2, 8, 7, 9, generator=gen)

    def gradients(x, weight, attn, groups=1):
        leaves = [t.clone().requires_grad_() for t in (x, weight, attn)]
        y = ops.modulated_conv(*leaves[:2], None, leaves[2], groups)
        return torch.autograd.grad(y, leaves, grad_y.to(y.dtype))

    fast = gradients(x, weight, attn)
    assert len(calls) == 1
    exact = reference.modulated_conv_backward(grad_y.double(), x.double(), weight.double(), attn.double())
    with cpu_kernels.disabled():
        plain = gradients(x, weight, attn)
    assert_gradients_within_roundoff(fast, plain, exact, ("dx", "dweight", "dattn"))
    gradients(x.double(), weight.double(), attn.double())
    gradients(x, weight.reshape(8, 4, 2, 3, 3)[:, :, 0].contiguous(), attn, groups=2)
    assert len(calls) == 1


def test_a_training_step_gets_the_plain_gradients_to_roundoff(kernels, monkeypatch):
    """The whole `small` network's parameter gradients with the kernels (Winograd forward and backward of the
    explainable convolutions, on every CPU here: `winograd_trains` held true) against float64, as close as the plain
    path's; none left unwritten."""
    monkeypatch.setattr(cpu_kernels, "winograd_trains", lambda: True)
    torch.manual_seed(0)
    # std 0.05: with 0.02 the explainable convolutions' gradients are a trillionth of the largest, too small to show
    model = randomize(build_model("small"), std=0.05).train()
    x = torch.rand(2, 3, 36, 44)

    def gradients(net, dtype):
        net.zero_grad(set_to_none=True)
        net(x.to(dtype)).square().mean().backward()
        return [p.grad.clone() for p in net.parameters()]

    fast = gradients(model, torch.float32)
    with cpu_kernels.disabled():
        plain = gradients(model, torch.float32)
    exact = gradients(copy.deepcopy(model).double(), torch.float64)
    # floor 1e-5 of each gradient's scale (about 100 float32 roundings): a gradient that is one sum over whole maps,
    # as RESM's step size η's, can land by cancellation far closer to float64 on one path than its round-off
    # allows (in one CI run the plain path's error on η was 19× below the kernels', which was 6e-6 of its scale)
    assert_gradients_within_roundoff(fast, plain, exact, [name for name, _ in model.named_parameters()], floor=1e-5)


@pytest.mark.parametrize("trains", [True, False])
def test_training_takes_the_winograd_kernels_only_where_they_pay(kernels, monkeypatch, trains):
    """The op's calls for autograd (forward and backward) take the Winograd kernels only where `winograd_trains`;
    inference takes them either way."""
    monkeypatch.setattr(cpu_kernels, "winograd_trains", lambda: trains)
    calls = []
    real = cpu_kernels.winograd3x3
    monkeypatch.setattr(cpu_kernels, "winograd3x3",
                        lambda *a, **k: calls.append(k.get("adjoint", False)) or real(*a, **k))
    x, weight, attn = torch.randn(2, 8, 7, 9), torch.randn(8, 8, 3, 3), torch.rand(2, 8, 3, 3)
    leaves = [t.clone().requires_grad_() for t in (x, weight, attn)]
    ops.modulated_conv(leaves[0], leaves[1], None, leaves[2]).sum().backward()
    assert calls == ([False, True] if trains else [])  # the forward, then dx (the adjoint) in the backward
    with torch.no_grad():
        ops.modulated_conv(x, weight, None, attn)
    assert calls[-1:] == [False]


def test_winograd_trains_except_where_aten_runs_avx512(monkeypatch):
    for capability, trains in (("AVX512", False), ("AVX2", True), ("DEFAULT", True)):
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        cpu_kernels.winograd_trains.cache_clear()
        assert cpu_kernels.winograd_trains() is trains
    cpu_kernels.winograd_trains.cache_clear()


@pytest.mark.parametrize("preset", ["small", "paper"])
def test_whole_network_equals_the_plain_path(kernels, preset):
    torch.manual_seed(0)
    model = randomize(build_model(preset), std=0.02)
    x = torch.rand(1, 3, 52, 68)
    with torch.no_grad():
        fast = model(x)
    # Each kernel keeps the 1e-6 floor in its own tests above. Through a whole network two float32 paths drift apart
    # by more than a per-layer factor: on an AVX-512 Xeon, `paper` at 2 threads, oneDNN's plain path erred 9.0e-7
    # and the kernels 5.8e-6 (4.6e-6 of the scale), while the plain path alone erred 4.3e-6 at 1 thread. A wrong
    # weight or an unwritten element is orders of magnitude above 1e-5 of the scale.
    assert_within_roundoff(fast, model, x, floor=1e-5)


def test_the_explanation_is_recorded_on_the_fused_path(kernels):
    block = randomize(EPBlock(6))
    block.conv2.record = True
    x = torch.randn(1, 6, 10, 10)
    with torch.no_grad():
        block(x)
        fused = block.conv2.last_attention.clone()
        with cpu_kernels.disabled():
            block(x)
    assert torch.allclose(fused, block.conv2.last_attention, atol=1e-6)


# ---------------------------------------------------------------------------------------------- when they run
def test_they_run_only_where_they_give_the_plain_result(kernels):
    block = Convs(4, 4, 2)
    x = torch.randn(1, 4, 5, 5)
    w = block[0].weight
    assert not cpu_kernels.usable(x, w)  # grad enabled: training uses autograd's path
    with torch.no_grad():
        assert cpu_kernels.usable(x, w)
        assert not cpu_kernels.usable(x.double(), w.double())
        assert not cpu_kernels.usable(x.bfloat16(), w)
        assert not cpu_kernels.usable(x.to("meta"), w)
        with fast_paths.disabled():
            assert not cpu_kernels.usable(x, w)
        with cpu_kernels.disabled():
            assert not cpu_kernels.usable(x, w)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # the plain path computes in bfloat16 there
            assert not cpu_kernels.usable(x, w)
        with torch.utils.flop_counter.FlopCounterMode(display=False):  # it must see every product
            assert not cpu_kernels.usable(x, w)
        assert cpu_kernels.usable(x, w)
    with torch.inference_mode():
        assert cpu_kernels.usable(x, w)


def test_training_still_gets_gradients():
    block = randomize(Convs(4, 4, 2)).train()
    x = torch.randn(1, 4, 5, 5, requires_grad=True)
    block(x).sum().backward()
    assert x.grad is not None and block[0].weight.grad is not None


def test_status_never_builds(monkeypatch):
    monkeypatch.setattr(cpu_kernels, "_module", None)
    monkeypatch.setattr(cpu_kernels, "_failure", None)
    monkeypatch.setattr(cpu_kernels, "_build", lambda: pytest.fail("status() built the kernels"))
    assert cpu_kernels.status().startswith("not built in this process yet")


def test_a_bad_switch_value_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv(cpu_kernels.ENV_VAR, "sometimes")
    with pytest.raises(InterIRError, match="INTERIR_CPU_KERNELS='sometimes'"):
        cpu_kernels.mode()


def test_every_command_refuses_a_bad_switch_value_before_any_work(monkeypatch, capsys):
    from interir.cli import main

    monkeypatch.setenv(cpu_kernels.ENV_VAR, "sometimes")
    assert main(["info", "--preset", "tiny", "--size", "16", "--no-latency"]) == 1
    err = capsys.readouterr().err
    assert "INTERIR_CPU_KERNELS='sometimes'" in err and err.strip().count("\n") == 0, err


def test_a_failed_build_falls_back_once_or_fails_when_required(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cpu_kernels, "SOURCE", tmp_path / "missing.cpp")
    monkeypatch.setattr(cpu_kernels, "_module", None)
    monkeypatch.setattr(cpu_kernels, "_failure", None)
    assert cpu_kernels.load() is None
    assert "missing.cpp" in cpu_kernels.unavailable_reason()
    assert "using the plain path" in capsys.readouterr().err
    block = Convs(4, 4, 2)
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        assert not cpu_kernels.usable(x, block[0].weight)
        block(x)  # the plain path, no second message
    assert capsys.readouterr().err == ""
    monkeypatch.setenv(cpu_kernels.ENV_VAR, "1")
    with pytest.raises(InterIRError, match="INTERIR_CPU_KERNELS=1 but the CPU kernels are unavailable"):
        cpu_kernels.load()


def test_switched_off_no_build_is_attempted(tmp_path):
    code = ("import torch; from interir import cpu_kernels as ck; from interir.model.blocks import Convs; "
            "b = Convs(4, 4, 2)\nwith torch.no_grad(): b(torch.randn(1, 4, 5, 5))\n"
            "assert ck._module is None and ck._failure is None")
    env = {**os.environ, cpu_kernels.ENV_VAR: "0"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------------------------- the attention's pooling
@pytest.mark.parametrize("tau", [0.5, 3.0])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("b, c, h, w", [(2, 5, 11, 13), (1, 64, 64, 64), (3, 2, 5, 4), (1, 3, 1, 7)])
def test_attention_kernel_equals_the_pooled_mask(kernels, tau, k, b, c, h, w):
    from interir.ops import reference

    x = torch.randn(b, c, h, w)
    x[..., 0, 0] = 0.1  # on the threshold: not above it
    theta = torch.tensor([0.1])
    fast, plain = fast_and_plain(reference.explainable_attention, x, theta, k, tau)
    with torch.no_grad():
        exact = reference.explainable_attention(x.double(), theta.double(), k, tau)
    assert not torch.isnan(fast).any()
    assert (fast.double() - exact).abs().max() <= 4 * (plain.double() - exact).abs().max() + 1e-6 * k * k


def test_attention_kernel_keeps_nan_planes_and_infinite_ones_as_the_plain_path(kernels):
    from interir.ops import reference

    x = torch.randn(2, 4, 9, 40)  # rows of two 16-pixel vectors and a tail of 8
    x[1, 2, 3, 4] = float("nan")  # in a vector
    x[0, 0, 8, 37] = float("nan")  # in the tail
    x[0, 1, 0, 0] = float("inf")
    x[0, 3, 2, 2] = float("-inf")
    fast, plain = fast_and_plain(reference.explainable_attention, x, torch.tensor([0.0]), 3, 0.5)
    assert torch.equal(torch.isnan(fast), torch.isnan(plain))
    assert torch.isnan(fast[1, 2]).all() and torch.isnan(fast[0, 0]).all() and torch.isnan(fast).sum() == 18
    assert torch.allclose(fast.nan_to_num(), plain.nan_to_num(), atol=1e-6)
