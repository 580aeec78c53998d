"""Fused backends of the explainable convolution (triton, cuda) against the float64 reference.

Every fused result must satisfy the tolerance rule of docs/testing.md: its error against the reference computed in
float64 is at most 2× the error of the same-dtype reference, plus a small absolute floor. Outputs are
NaN-poisoned (INTERIR_POISON_OUTPUTS=1) so that an element a kernel does not write fails. Without a GPU the
Triton kernels run under the Triton interpreter on small shapes; bfloat16/float16 on hardware and the large
shapes carry the `gpu` marker.
"""
from __future__ import annotations

import math

import pytest
import torch

import interir
from interir import ops
from interir.ops import reference as ref
from interir.ops.verify import assert_within_reference_error
from tests.conftest import skip_triton_half_on_cpu, use_backend_or_skip

HAS_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if HAS_CUDA else "cpu"
F64 = torch.float64
TAU = 0.5
requires_gpu = pytest.mark.skipif(not HAS_CUDA, reason="needs an NVIDIA GPU (CUDA not available)")

# relative floor of the tolerance rule, per dtype (times the magnitude of the float64 result)
FLOOR = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}

try:  # the Triton backend's configs, for the one-config-at-a-time tests
    from interir.kernels import depthwise_conv as triton_dw
    from interir.kernels import explainable_attention as triton_attn
    from interir.kernels import modulated_conv as triton_conv

    TUNINGS = {t.name: t for t in (triton_attn.TUNING, triton_dw.TUNING, triton_conv.FWD, triton_conv.DX,
                                   triton_conv.DWA)}
    CONFIG_CASES = [(kind, i) for kind, t in TUNINGS.items() for i in range(len(t.candidates))]
except Exception:  # noqa: BLE001  (triton missing or broken: the backend tests skip with the reason)
    triton_attn = triton_conv = None
    CONFIG_CASES = []


@pytest.fixture(autouse=True)
def _poison_and_strict_fp32(monkeypatch):
    """NaN-fill every kernel output; on a GPU compare float32 without TF32 (the reference's conv would use it)."""
    monkeypatch.setenv("INTERIR_POISON_OUTPUTS", "1")
    monkeypatch.delenv("INTERIR_TRITON_AUTOTUNE", raising=False)
    if HAS_CUDA:
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    yield




def _triton_only():
    reason = ops.available_backends()["triton"]
    if reason or triton_conv is None:
        pytest.skip(f"backend 'triton' unavailable: {reason}")


# --------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------


def _floor(ref64, dtype):
    return FLOOR[dtype] * max(1.0, ref64.abs().max().item() if ref64.numel() else 1.0)


def _conv_inputs(b, cin, cout, h, w, k, groups, dtype=torch.float32):
    x = torch.randn(b, cin, h, w, device=DEVICE)
    weight = torch.randn(cout, cin // groups, k, k, device=DEVICE) / math.sqrt(cin // groups * k * k)
    bias = torch.randn(cout, device=DEVICE)
    attn = torch.rand(b, cin, k, k, device=DEVICE) * 2
    dy = torch.randn(b, cout, h, w, device=DEVICE)
    return x.to(dtype), weight.to(dtype), bias, attn, dy.to(dtype)


def _conv_reference(x, weight, bias, attn, dy, groups):
    """(y, dx, dW, dA, dbias) of the reference, in the inputs' dtype."""
    y = ref.modulated_conv(x, weight, bias.to(x.dtype), attn, groups)
    return (y,) + tuple(ref.modulated_conv_backward(dy, x, weight, attn, groups))


def _check_conv(got, x, weight, bias, attn, dy, groups, dtype, label=""):
    """got = (y, dx, dW, dA, dbias) against the float64 and same-dtype references."""
    r64 = _conv_reference(x.double(), weight.double(), bias.double(), attn.double(), dy.double(), groups)
    rsame = list(_conv_reference(x, weight, bias, attn, dy, groups))
    rsame[4] = rsame[4].to(bias.dtype)  # the op returns dbias in the bias's dtype (the reference: the weight's)
    for name, g, rs, r in zip(("y", "dx", "dweight", "dattn", "dbias"), got, rsame, r64):
        assert_within_reference_error(g, rs, r, _floor(r, dtype), f"{label}{name}")


def _run_conv_autograd(backend, x, weight, bias, attn, dy, groups):
    leaves = [t.detach().clone().requires_grad_() for t in (x, weight, bias, attn)]
    y = ops.modulated_conv(*leaves[:3], leaves[3], groups, backend=backend)
    dx, dw, db, da = torch.autograd.grad(y, leaves, dy)
    return y.detach(), dx, dw, da, db


def _attn_reference(x, theta, k, g):
    a = ref.explainable_attention(x, theta, k, TAU)
    return (a,) + tuple(ref.explainable_attention_backward(g, x, theta, a, TAU))


def _check_attention(got, x, theta, k, g, label=""):
    """got = (A, dx, dθ) against the float64 and same-dtype (float32 math) references."""
    r64 = _attn_reference(x.double(), theta.double(), k, g.double())
    rsame = _attn_reference(x, theta, k, g)
    a, dx, dtheta = got
    assert a.dtype == torch.float32 and dx.dtype == x.dtype and dtheta.dtype == theta.dtype
    assert_within_reference_error(a, rsame[0], r64[0], 1e-6 * k * k, f"{label}attn")
    assert_within_reference_error(dx, rsame[1], r64[1], _floor(r64[1], torch.float32), f"{label}dx")
    dtheta_floor = 1e-6 * max(1.0, r64[1].abs().sum().item())
    assert_within_reference_error(dtheta, rsame[2], r64[2], dtheta_floor, f"{label}dtheta")


# --------------------------------------------------------------------------------------------------------
# modulated conv: forward and all gradients
# --------------------------------------------------------------------------------------------------------

CONV_SHAPES = [  # b, cin, cout, h, w, k, groups
    (1, 3, 5, 7, 9, 3, 1),
    (3, 5, 3, 5, 13, 1, 1),
    (3, 17, 5, 7, 9, 5, 1),
    (1, 3, 17, 5, 13, 3, 1),
    (3, 6, 6, 7, 9, 3, 6),  # depthwise
    (1, 5, 5, 5, 13, 5, 5),  # depthwise
    (3, 4, 6, 5, 7, 3, 2),  # grouped
]


@pytest.mark.parametrize("shape", CONV_SHAPES, ids=lambda s: "b{}_ci{}_co{}_{}x{}_k{}_g{}".format(*s))
def test_conv_forward_and_gradients_match_reference(backend, shape):
    b, cin, cout, h, w, k, groups = shape
    x, weight, bias, attn, dy = _conv_inputs(b, cin, cout, h, w, k, groups)
    got = _run_conv_autograd(backend, x, weight, bias, attn, dy, groups)
    _check_conv(got, x, weight, bias, attn, dy, groups, torch.float32)


@pytest.mark.parametrize("shape", [(2, 5, 7, 6, 7, 3, 1), (2, 4, 4, 5, 6, 5, 4)], ids=["full", "depthwise"])
def test_conv_backward_op_called_directly(backend, shape):
    b, cin, cout, h, w, k, groups = shape
    x, weight, bias, attn, dy = _conv_inputs(b, cin, cout, h, w, k, groups)
    y = getattr(torch.ops.interir, f"modulated_conv_{backend}").default(x, weight, bias, attn, groups)
    grads = getattr(torch.ops.interir, f"modulated_conv_backward_{backend}").default(dy, x, weight, attn, groups)
    _check_conv((y,) + tuple(grads), x, weight, bias, attn, dy, groups, torch.float32)


def test_conv_without_bias(backend):
    x, weight, _, attn, dy = _conv_inputs(2, 3, 4, 5, 6, 3, 1)
    leaves = [t.clone().requires_grad_() for t in (x, weight, attn)]
    y = ops.modulated_conv(leaves[0], leaves[1], None, leaves[2], backend=backend)
    dx, dw, da = torch.autograd.grad(y, leaves, dy)
    want = ref.modulated_conv(x.double(), weight.double(), None, attn.double())
    same = ref.modulated_conv(x, weight, None, attn)
    assert_within_reference_error(y.detach(), same, want, _floor(want, torch.float32), "y")
    r64 = ref.modulated_conv_backward(dy.double(), x.double(), weight.double(), attn.double())
    r32 = ref.modulated_conv_backward(dy, x, weight, attn)
    for name, g, rs, r in zip(("dx", "dweight", "dattn"), (dx, dw, da), (r32[0], r32[1], r32[2]), r64):
        assert_within_reference_error(g, rs, r, _floor(r, torch.float32), name)


# --------------------------------------------------------------------------------------------------------
# attention: forward and gradients (straight-through)
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("bchw", [(1, 3, 7, 9), (3, 5, 5, 13), (2, 17, 2, 3)], ids=lambda s: "x".join(map(str, s)))
def test_attention_and_gradients_match_reference(backend, k, bchw):
    x = torch.randn(*bchw, device=DEVICE)
    theta = (torch.rand(1, device=DEVICE) - 0.5) * 0.4
    g = torch.randn(bchw[0], bchw[1], k, k, device=DEVICE)
    xl, tl_ = x.clone().requires_grad_(), theta.clone().requires_grad_()
    a = ops.explainable_attention(xl, tl_, k, TAU, backend=backend)
    dx, dtheta = torch.autograd.grad(a, (xl, tl_), g)
    _check_attention((a.detach(), dx, dtheta.reshape(())), x, theta.reshape(()), k, g)


def test_attention_backward_op_called_directly(backend):
    x = torch.randn(2, 5, 6, 11, device=DEVICE)
    theta = torch.tensor(0.1, device=DEVICE)
    g = torch.randn(2, 5, 3, 3, device=DEVICE)
    a = getattr(torch.ops.interir, f"explainable_attention_{backend}").default(x, theta, 3, TAU)
    dx, dtheta = getattr(torch.ops.interir, f"explainable_attention_backward_{backend}").default(g, x, theta, a, TAU)
    _check_attention((a, dx, dtheta), x, theta, 3, g)


@pytest.mark.parametrize("tau", [0.5, 3.0])
def test_attention_mask_is_the_reference_at_subnormal_margins(backend, tau):
    """The mask is 1[(x − θ)/τ > 0]: with τ > 1 a positive subnormal x − θ can divide to zero (not counted),
    one twice as large does not; the forward must count exactly the reference's pixels."""
    tiny = torch.tensor([2.0**-149, 2.0**-148, -(2.0**-149), 0.0, 1.0, -1.0, 2.0**-126, 3 * 2.0**-149])
    x = tiny.repeat(2, 3, 4, 1).to(DEVICE)  # 2×3×4×8: every value in every bin column of a k = 2 attention
    x[1] = x[1].flip(-1)
    theta = torch.zeros(1, device=DEVICE)
    got = ops.explainable_attention(x, theta, 2, tau, backend=backend)
    expected = ref.explainable_attention(x, theta, 2, tau)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)  # one pixel more in a bin moves A by > 0.01


def test_attention_of_a_plane_with_a_nan_pixel_is_nan(backend):
    """NaN in, NaN out, as in the reference: a NaN pixel makes its (b, c) plane's attention NaN, no other."""
    x = torch.randn(2, 3, 5, 7, device=DEVICE)
    x[1, 2, 4, 6] = float("nan")
    theta = torch.zeros(1, device=DEVICE)
    got = ops.explainable_attention(x, theta, 3, TAU, backend=backend)
    expected = ref.explainable_attention(x, theta, 3, TAU)
    assert torch.isnan(expected[1, 2]).all() and torch.isnan(got[1, 2]).all()
    keep = torch.ones(2, 3, dtype=torch.bool)
    keep[1, 2] = False
    torch.testing.assert_close(got[keep], expected[keep], rtol=1e-5, atol=1e-6)


def test_explainable_conv_end_to_end_gradients(backend):
    """The composed op (attention → conv) through the public function: every gradient, θ included."""
    b, cin, cout, h, w, k = 2, 5, 6, 7, 9, 3
    x = torch.randn(b, cin, h, w, device=DEVICE)
    weight = torch.randn(cout, cin, k, k, device=DEVICE) / math.sqrt(cin * k * k)
    bias = torch.randn(cout, device=DEVICE)
    theta = torch.tensor([0.1], device=DEVICE)
    dy = torch.randn(b, cout, h, w, device=DEVICE)

    def run(dtype, backend_name):
        leaves = [t.to(dtype).clone().requires_grad_() for t in (x, weight, bias, theta)]
        y = ops.explainable_conv(*leaves, tau=TAU, backend=backend_name)
        return (y.detach(),) + torch.autograd.grad(y, leaves, dy.to(dtype))

    got, r32, r64 = run(torch.float32, backend), run(torch.float32, "reference"), run(F64, "reference")
    for name, g, rs, r in zip(("y", "dx", "dweight", "dbias", "dtheta"), got, r32, r64):
        floor = _floor(r, torch.float32) if name != "dtheta" else 1e-5 * max(1.0, r.abs().item())
        assert_within_reference_error(g, rs, r, floor, name)


# --------------------------------------------------------------------------------------------------------
# layouts, determinism, configs
# --------------------------------------------------------------------------------------------------------


def test_non_contiguous_inputs(backend):
    b, cin, cout, h, w, k = 2, 5, 4, 6, 7, 3
    x = torch.randn(b, h, cin, w, device=DEVICE).permute(0, 2, 1, 3)  # B×Cin×H×W view, not contiguous
    weight = (torch.randn(cin, cout, k, k, device=DEVICE) / 5).transpose(0, 1)
    bias = torch.randn(2 * cout, device=DEVICE)[::2]
    attn = (torch.rand(b, cin, k, k + 2, device=DEVICE) * 2)[..., 1:-1]
    dy = torch.randn(b, cout, w, h, device=DEVICE).transpose(-1, -2)
    theta = torch.tensor([0.05], device=DEVICE)
    assert not any(t.is_contiguous() for t in (x, weight, bias, attn, dy))
    got = _run_conv_autograd(backend, x, weight, bias, attn, dy, 1)
    _check_conv(got, x.contiguous(), weight.contiguous(), bias.contiguous(), attn.contiguous(), dy.contiguous(),
                1, torch.float32)
    ga = torch.randn(b, cin, k, k, device=DEVICE)
    xl = x.clone().requires_grad_()  # clone keeps the permuted strides
    a = ops.explainable_attention(xl, theta, k, TAU, backend=backend)
    (dx,) = torch.autograd.grad(a, xl, ga)
    r64 = _attn_reference(x.double(), theta.double(), k, ga.double())
    r32 = _attn_reference(x, theta, k, ga)
    assert_within_reference_error(a.detach(), r32[0], r64[0], 1e-6 * k * k, "attn")
    assert_within_reference_error(dx, r32[1], r64[1], _floor(r64[1], torch.float32), "attn dx")


@pytest.mark.parametrize("groups", [1, 4], ids=["full", "depthwise"])
def test_bitwise_deterministic(backend, groups):
    b, c, h, w, k = 3, 4, 6, 7, 3
    x = torch.randn(b, c, h, w, device=DEVICE)
    weight = torch.randn(c, c // groups, k, k, device=DEVICE)
    bias = torch.randn(c, device=DEVICE)
    theta = torch.tensor([0.1], device=DEVICE)
    dy = torch.randn(b, c, h, w, device=DEVICE)

    def run():
        leaves = [t.clone().requires_grad_() for t in (x, weight, bias, theta)]
        y, a = ops.explainable_conv(*leaves, groups=groups, return_attention=True, backend=backend)
        return (y.detach(), a.detach()) + torch.autograd.grad(y, leaves, dy)

    first, second = run(), run()
    for i, (p, q) in enumerate(zip(first, second)):
        assert torch.equal(p, q), f"output {i} differs between two identical runs"


@pytest.mark.parametrize("kind, index", CONFIG_CASES, ids=[f"{k}-{i}" for k, i in CONFIG_CASES])
def test_each_triton_config_alone(kind, index):
    _triton_only()
    cfg = TUNINGS[kind].candidates[index]
    if kind == "attention":
        x = torch.randn(2, 17, 9, 11, device=DEVICE)
        theta = torch.tensor(0.1, device=DEVICE)
        for k in (3, 5):
            g = torch.randn(2, 17, k, k, device=DEVICE)
            a = triton_attn.explainable_attention(x, theta, k, TAU, config=cfg)
            dx, dtheta = triton_attn.explainable_attention_backward(g, x, theta, a, TAU, config=cfg)
            _check_attention((a, dx, dtheta), x, theta, k, g, f"{cfg} k={k}: ")
        return
    if kind == "depthwise":
        shape, kw = (2, 5, 5, 9, 11, 3, 5), dict(config=cfg)
        bkw = dict(config_dx=cfg, config_dwa=cfg)
    else:  # several blocks along every axis for the small configs
        shape = (2, 17, 18, 6, 7, 3, 1)
        kw = dict(config=cfg) if kind == "conv_fwd" else {}
        bkw = {"conv_dx": dict(config_dx=cfg), "conv_dwa": dict(config_dwa=cfg)}.get(kind, {})
    b, cin, cout, h, w, k, groups = shape
    x, weight, bias, attn, dy = _conv_inputs(b, cin, cout, h, w, k, groups)
    y = triton_conv.modulated_conv(x, weight, bias, attn, groups, **kw)
    grads = triton_conv.modulated_conv_backward(dy, x, weight, attn, groups, **bkw)
    _check_conv((y,) + tuple(grads), x, weight, bias, attn, dy, groups, torch.float32, f"{cfg}: ")


@pytest.mark.parametrize("k, with_bias, groups", [(3, True, 1), (5, False, 1), (3, True, 2)])
def test_descriptor_kernels_on_odd_shapes_and_several_blocks(k, with_bias, groups, monkeypatch):
    """The tensor-descriptor forward, dx and dW/dA (kernels/modulated_conv_tma.py): patches, channel and output
    blocks that do not divide the odd map and channel counts, the zero-filled border for k = 3 and 5, two batch
    chunks of partials; groups = 2 falls back to the implicit GEMM."""
    _triton_only()
    from interir.kernels import modulated_conv_tma as tma

    cfg = tma.TmaConfig(4, 8, 16, 16, num_warps=4, num_stages=2)
    calls = []
    for name in ("modulated_conv_tma", "modulated_conv_dx_tma", "weight_grad_partials_tma"):
        kernel = getattr(tma, name)
        monkeypatch.setattr(tma, name, lambda *a, kernel=kernel, name=name: calls.append(name) or kernel(*a))
    x, weight, bias, attn, dy = _conv_inputs(2, 40, 34, 11, 19, k, groups)
    y = triton_conv.modulated_conv(x, weight, bias if with_bias else None, attn, groups, config=cfg)
    grads = triton_conv.modulated_conv_backward(dy, x, weight, attn, groups, config_dx=cfg, config_dwa=cfg)
    assert calls == (["modulated_conv_tma", "modulated_conv_dx_tma", "weight_grad_partials_tma"] if groups == 1 else [])
    check_bias = bias if with_bias else torch.zeros_like(bias)
    _check_conv((y,) + tuple(grads), x, weight, check_bias, attn, dy, groups, torch.float32, f"{cfg}: ")


def test_weight_gradient_batch_chunks(monkeypatch):
    """dWt/dbias partials per batch chunk (here 2 samples, then 1) are summed correctly."""
    _triton_only()
    monkeypatch.setattr(triton_conv, "_dwa_chunks", lambda b, base: (2, math.ceil(b / 2)))
    x, weight, bias, attn, dy = _conv_inputs(3, 5, 6, 5, 7, 3, 1)
    y = triton_conv.modulated_conv(x, weight, bias, attn, 1)
    grads = triton_conv.modulated_conv_backward(dy, x, weight, attn, 1)
    _check_conv((y,) + tuple(grads), x, weight, bias, attn, dy, 1, torch.float32)


# --------------------------------------------------------------------------------------------------------
# op contract: supports, torch.compile, opcheck, the model
# --------------------------------------------------------------------------------------------------------


def test_why_not_gives_one_line_reasons(monkeypatch):
    _triton_only()
    x = torch.randn(1, 4, 5, 5, device=DEVICE)
    w = torch.randn(4, 4, 3, 3, device=DEVICE)
    a = torch.rand(1, 4, 3, 3, device=DEVICE)
    theta = torch.tensor(0.0, device=DEVICE)
    conv, attention = triton_conv.why_not, triton_attn.why_not
    reasons = {
        "float64": conv(x.double(), w.double(), None, a, 1),
        "groups": conv(x, w, None, a, 3),
        "even k": conv(x, torch.randn(4, 4, 2, 2), None, torch.rand(1, 4, 2, 2), 1),
        "attention k": attention(x, theta, 17, 0.5),
    }
    if not HAS_CUDA:
        reasons["bfloat16"] = conv(x.bfloat16(), w.bfloat16(), None, a, 1)
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        reasons["cpu"] = conv(x, w, None, a, 1)
        assert "CUDA" in reasons["cpu"]
        reasons["cpu attention"] = attention(x, theta, 3, 0.5)
        monkeypatch.undo()
    else:
        reasons["cpu"] = conv(x.cpu(), w.cpu(), None, a.cpu(), 1)
        assert "CUDA" in reasons["cpu"]
    for what, reason in reasons.items():
        assert isinstance(reason, str) and reason and "\n" not in reason, what
    assert "float64" in reasons["float64"] and "groups" in reasons["groups"]
    assert conv(x, w, None, a, 1) is None or not HAS_CUDA
    assert attention(x, theta, 3, 0.5) is None or not HAS_CUDA
    with pytest.raises(ops.BackendUnavailable, match="backend 'triton' cannot run modulated_conv: .*float64"):
        ops.modulated_conv(x.double(), w.double(), None, a, backend="triton")
    # auto falls back to an equally correct backend for float64
    y = ops.modulated_conv(x.double(), w.double(), None, a)
    assert y.dtype == F64


def test_torch_compile_sees_an_opaque_op(backend):
    x = torch.randn(2, 3, 6, 7, device=DEVICE, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, device=DEVICE, requires_grad=True)
    bias = torch.randn(4, device=DEVICE)
    theta = torch.tensor([0.1], device=DEVICE, requires_grad=True)

    def fn(x, weight, bias, theta):
        return ops.explainable_conv(x, weight, bias, theta, backend=backend).square().mean()

    torch._dynamo.reset()
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    loss_c = compiled(x, weight, bias, theta)
    grads_c = torch.autograd.grad(loss_c, (x, weight, theta))
    loss_e = fn(x, weight, bias, theta)
    grads_e = torch.autograd.grad(loss_e, (x, weight, theta))
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-6, atol=1e-6)
    for gc, ge in zip(grads_c, grads_e):
        torch.testing.assert_close(gc, ge, rtol=1e-5, atol=1e-6)


def test_opcheck(backend):
    x = torch.randn(1, 3, 4, 5, device=DEVICE)
    w = torch.randn(2, 3, 3, 3, device=DEVICE)
    b = torch.randn(2, device=DEVICE)
    a = torch.rand(1, 3, 3, 3, device=DEVICE)
    ns = torch.ops.interir
    torch.library.opcheck(getattr(ns, f"modulated_conv_{backend}").default,
                          tuple(t.clone().requires_grad_() for t in (x, w, b, a)) + (1,))
    torch.library.opcheck(getattr(ns, f"explainable_attention_{backend}").default,
                          (x.clone().requires_grad_(), torch.tensor(0.1, device=DEVICE), 3, TAU))


def test_tiny_model_matches_reference(backend):
    from tests.conftest import wake_up

    torch.manual_seed(1234)
    model = wake_up(interir.build_model("tiny")).to(DEVICE)
    x = torch.rand(1, 3, 16, 16, device=DEVICE)

    def run(name):
        model.zero_grad(set_to_none=True)
        with ops.use_backend(name):
            y = model(x)
            (y.square().mean()).backward()
        return y.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}

    y_ref, g_ref = run("reference")
    y_fused, g_fused = run(backend)
    torch.testing.assert_close(y_fused, y_ref, rtol=1e-4, atol=1e-5)
    assert g_ref.keys() == g_fused.keys()
    for name, g in g_ref.items():
        scale = max(1e-3, g.abs().max().item())
        err = (g_fused[name] - g).abs().max().item()
        assert err <= 2e-3 * scale, f"{name}: gradient error {err:.3e} (scale {scale:.3e})"


def test_float16_under_the_interpreter_or_gpu(backend):
    """float16 storage with float32 accumulation (the interpreter has float16 math, not bfloat16)."""
    dtype = torch.float16
    x, weight, bias, attn, dy = _conv_inputs(2, 5, 6, 6, 7, 3, 1, dtype=dtype)
    got = _run_conv_autograd(backend, x, weight, bias, attn, dy, 1)
    assert got[0].dtype == dtype and got[1].dtype == dtype
    _check_conv(got, x, weight, bias, attn, dy, 1, dtype)


# --------------------------------------------------------------------------------------------------------
# the CUDA extension's two paths: tensor-core implicit GEMMs (16-bit, TF32 on request) and FFMA kernels
# --------------------------------------------------------------------------------------------------------

# Shapes off every tile: the implicit GEMM's 32×32 warp tile and 16-wide K step; the halo tiles' 16 channels ×
# 8×16 pixels (several channel steps, channel blocks and patches, partial ones last); two groups; depthwise;
# k = 1, 3, 5.
MMA_SHAPES = [(2, 20, 36, 13, 21, 3, 2), (3, 7, 33, 9, 5, 5, 1), (2, 40, 17, 6, 11, 1, 1),
              (2, 40, 34, 19, 35, 3, 1), (2, 6, 6, 9, 17, 3, 6)]
# INTERIR_CUDA_TENSOR_CORES: 1 (default: halo tiles for 3×3, the implicit GEMM otherwise), gemm, 0 (FFMA)
CUDA_PATHS = ("1", "gemm", "0")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("shape", MMA_SHAPES, ids=lambda s: "b{}_ci{}_co{}_{}x{}_k{}_g{}".format(*s))
def test_cuda_tensor_core_and_ffma_paths_match_reference(dtype, shape, monkeypatch):
    """Every path of the CUDA extension's 16-bit convolutions meets the tolerance rule on tile-edge shapes; the
    default path is bitwise reproducible, and the paths are not one another in disguise."""
    use_backend_or_skip("cuda", monkeypatch)
    b, cin, cout, h, w, k, groups = shape
    x, weight, bias, attn, dy = _conv_inputs(b, cin, cout, h, w, k, groups, dtype=dtype)
    results = {}
    for path in CUDA_PATHS:
        monkeypatch.setenv("INTERIR_CUDA_TENSOR_CORES", path)
        got = _run_conv_autograd("cuda", x, weight, bias, attn, dy, groups)
        _check_conv(got, x, weight, bias, attn, dy, groups, dtype, f"INTERIR_CUDA_TENSOR_CORES={path} ")
        results[path] = got
    monkeypatch.setenv("INTERIR_CUDA_TENSOR_CORES", "1")
    again = _run_conv_autograd("cuda", x, weight, bias, attn, dy, groups)
    assert all(torch.equal(p, q) for p, q in zip(results["1"], again)), "the tensor-core path is not reproducible"
    # the forward's operands differ (W·A rounded to the dtype, as the reference rounds it, against float FFMA)
    assert not torch.equal(results["1"][0], results["0"][0])
    if k == 3 and cin // groups > 1:  # the halo tiles sum the same products in another order than the GEMM
        assert any(not torch.equal(p, q) for p, q in zip(results["1"], results["gemm"]))


def _abs_conv_reference(x, weight, bias, attn, dy, groups):
    """(y, dx, dW, dA, dbias) of the float64 reference on absolute values: Σ|terms| of every output element."""
    return _conv_reference(*(t.double().abs() for t in (x, weight, bias, attn, dy)), groups)


@pytest.mark.parametrize("shape", MMA_SHAPES[:2] + MMA_SHAPES[3:4], ids=["g2_k3", "k5", "k3_patches"])
def test_cuda_float32_uses_tf32_tensor_cores_only_when_asked(shape, monkeypatch):
    """float32 stays IEEE by default; with torch.set_float32_matmul_precision("high") the CUDA convolutions run on
    TF32 tensor cores, each element within TF32's bound: 2⁻⁹·Σ|terms| (two operands rounded to 10 bits, ×2)."""
    use_backend_or_skip("cuda", monkeypatch)
    b, cin, cout, h, w, k, groups = shape
    x, weight, bias, attn, dy = _conv_inputs(b, cin, cout, h, w, k, groups)
    ieee = _run_conv_autograd("cuda", x, weight, bias, attn, dy, groups)
    _check_conv(ieee, x, weight, bias, attn, dy, groups, torch.float32, "ieee ")
    r64 = _conv_reference(x.double(), weight.double(), bias.double(), attn.double(), dy.double(), groups)
    bounds = _abs_conv_reference(x, weight, bias, attn, dy, groups)
    before = torch.get_float32_matmul_precision()
    for path in CUDA_PATHS[:2]:
        monkeypatch.setenv("INTERIR_CUDA_TENSOR_CORES", path)
        try:
            torch.set_float32_matmul_precision("high")
            tf32 = _run_conv_autograd("cuda", x, weight, bias, attn, dy, groups)
        finally:
            torch.set_float32_matmul_precision(before)
        for name, got, r, bound in zip(("y", "dx", "dweight", "dattn", "dbias"), tf32, r64, bounds):
            excess = (got.double() - r).abs() - (2.0**-9 * bound + 1e-6)
            assert excess.max().item() <= 0, f"tf32 {path} {name}: {excess.max().item():.3g} beyond the TF32 bound"
        assert not torch.equal(tf32[0], ieee[0]), "opting in to TF32 changed nothing: no tensor-core path ran"


# --------------------------------------------------------------------------------------------------------
# GPU only: bfloat16/float16 on hardware, TF32, training-size shapes, autotuning
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("shape", [(4, 32, 48, 17, 23, 3, 1), (2, 24, 24, 33, 31, 5, 24), (3, 19, 7, 16, 16, 1, 1)],
                         ids=["full", "depthwise", "k1"])
def test_half_precision(backend, dtype, shape):
    """bfloat16/float16 on a GPU, or the CUDA kernels' host emulation (the Triton interpreter has no bf16 math)."""
    skip_triton_half_on_cpu(backend)
    b, cin, cout, h, w, k, groups = shape
    x, weight, bias, attn, dy = _conv_inputs(b, cin, cout, h, w, k, groups, dtype=dtype)
    got = _run_conv_autograd(backend, x, weight, bias, attn, dy, groups)
    assert all(t.dtype == dtype for t in got[:3])
    _check_conv(got, x, weight, bias, attn, dy, groups, dtype)
    theta = torch.tensor(0.1, device=DEVICE)
    g = torch.randn(b, cin, k, k, device=DEVICE)
    xl = x.clone().requires_grad_()
    a = ops.explainable_attention(xl, theta, k, TAU, backend=backend)
    (dx,) = torch.autograd.grad(a, xl, g)
    r64 = _attn_reference(x.double(), theta.double(), k, g.double())
    r_same = _attn_reference(x, theta, k, g)
    assert_within_reference_error(a.detach(), r_same[0], r64[0], 1e-6 * k * k, "attn")
    assert_within_reference_error(dx, r_same[1], r64[1], _floor(r64[1], dtype), "attn dx")


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("groups", [1, 96], ids=["full", "depthwise"])
def test_training_size_on_gpu(backend, groups):
    """B=8, 96 channels, 64×64 maps (the paper's EPBlock conv at 256² patches), float32 without TF32."""
    x, weight, bias, attn, dy = _conv_inputs(8, 96, 96, 64, 64, 3, groups)
    got = _run_conv_autograd(backend, x, weight, bias, attn, dy, groups)
    _check_conv(got, x, weight, bias, attn, dy, groups, torch.float32)


def test_float32_dots_are_ieee_unless_the_user_opts_in_to_tf32(monkeypatch):
    """The reference's grouped convolution gets no TF32 from cuDNN (cudnn.allow_tf32 notwithstanding), so the
    kernels use TF32 only when the user allows it for float32 matrix products."""
    _triton_only()
    from interir.kernels import _launch

    monkeypatch.setattr(_launch, "interpreting", lambda: False)
    # torch's flag objects are restored by hand: monkeypatch's undo cannot delete their properties
    cudnn_before, precision_before = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    try:
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("highest")
        assert _launch.dot_precision(torch.float32) == "ieee"
        torch.set_float32_matmul_precision("high")
        assert _launch.dot_precision(torch.float32) == "tf32"
        assert _launch.dot_precision(torch.bfloat16) == "ieee"  # 16-bit dots run in their own dtype anyway
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn_before
        torch.set_float32_matmul_precision(precision_before)


@pytest.mark.gpu
@requires_gpu
def test_tf32_opt_in_is_close(backend, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    x, weight, bias, attn, dy = _conv_inputs(4, 48, 48, 32, 32, 3, 1)
    got = _run_conv_autograd(backend, x, weight, bias, attn, dy, 1)
    r64 = _conv_reference(x.double(), weight.double(), bias.double(), attn.double(), dy.double(), 1)
    for name, g, r in zip(("y", "dx", "dweight", "dattn", "dbias"), got, r64):
        err = (g.double() - r).abs().max().item()
        assert err <= 5e-3 * r.abs().max().item() + 1e-5, f"{name}: TF32 error {err:.3e}"


@pytest.mark.gpu
@requires_gpu
def test_autotune_on_gpu(monkeypatch):
    _triton_only()
    monkeypatch.setenv("INTERIR_TRITON_AUTOTUNE", "1")
    x, weight, bias, attn, dy = _conv_inputs(4, 48, 40, 33, 35, 3, 1)
    first = _run_conv_autograd("triton", x, weight, bias, attn, dy, 1)
    second = _run_conv_autograd("triton", x, weight, bias, attn, dy, 1)
    for p, q in zip(first, second):
        assert torch.equal(p, q)
    _check_conv(first, x, weight, bias, attn, dy, 1, torch.float32)


def test_cuda_tensor_core_form_is_validated(monkeypatch):
    """A value of INTERIR_CUDA_TENSOR_CORES the kernels would not understand is a one-line error, not a silent
    default."""
    use_backend_or_skip("cuda", monkeypatch)
    monkeypatch.setenv("INTERIR_CUDA_TENSOR_CORES", "yes")
    x, weight, bias, attn, _ = _conv_inputs(1, 3, 4, 5, 6, 3, 1)
    with pytest.raises(interir.errors.InterIRError, match="INTERIR_CUDA_TENSOR_CORES='yes'") as info:
        ops.modulated_conv(x, weight, bias, attn, backend="cuda")
    assert "\n" not in str(info.value)
