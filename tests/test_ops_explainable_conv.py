"""Explainable convolution: the reference against independent formulations, its gradients, and the op contract."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from interir import cpu_kernels, ops
from interir.ops import reference as ref

F64 = torch.float64


def _inputs(b, cin, cout, h, w, k, groups=1, dtype=F64):
    x = torch.randn(b, cin, h, w, dtype=dtype)
    weight = torch.randn(cout, cin // groups, k, k, dtype=dtype)
    bias = torch.randn(cout, dtype=dtype)
    attn = torch.rand(b, cin, k, k, dtype=dtype) * 2
    return x, weight, bias, attn


def unfold_matmul_conv(x, weight, bias, attn, groups):
    """Scale the unfolded input taps by A, then one matmul with the shared weight (the identity of docs/model.md)."""
    b, cin, h, w = x.shape
    cout, cin_g, k, _ = weight.shape
    cols = F.unfold(x, k, padding=k // 2).reshape(b, cin, k * k, h * w)
    cols = cols * attn.reshape(b, cin, k * k, 1)
    cols = cols.reshape(b, groups, cin_g * k * k, h * w)
    wg = weight.reshape(groups, cout // groups, cin_g * k * k)
    y = torch.einsum("gok,bgkl->bgol", wg, cols).reshape(b, cout, h, w)
    return y + bias.reshape(1, -1, 1, 1)


def per_sample_loop_conv(x, weight, bias, attn, groups):
    """One ordinary conv per sample with its own kernel Wt ⊙ A_b."""
    outs = []
    cout, cin_g, k, _ = weight.shape
    for i in range(x.shape[0]):
        a = attn[i].reshape(groups, 1, cin_g, k, k)
        kernel = (weight.reshape(groups, cout // groups, cin_g, k, k) * a).reshape(weight.shape)
        outs.append(F.conv2d(x[i : i + 1], kernel, bias, padding=k // 2, groups=groups))
    return torch.cat(outs)


def attention_by_loops(x, theta, k):
    """A from the definition with explicit region loops in numpy (PyTorch's adaptive pooling bins)."""
    m = (x.numpy() > theta).astype(np.float64)
    b, c, h, w = m.shape
    p = np.zeros((b, c, k, k))
    for i in range(k):
        r0, r1 = (i * h) // k, -(-((i + 1) * h) // k)
        for j in range(k):
            c0, c1 = (j * w) // k, -(-((j + 1) * w) // k)
            p[:, :, i, j] = m[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    e = np.exp(p.reshape(b, c, -1) - p.reshape(b, c, -1).max(-1, keepdims=True))
    return torch.from_numpy((k * k * e / e.sum(-1, keepdims=True)).reshape(b, c, k, k))


SHAPES = [  # b, cin, cout, h, w, k, groups
    (1, 3, 5, 7, 9, 3, 1),
    (3, 4, 6, 11, 6, 1, 1),
    (2, 5, 5, 9, 13, 5, 1),
    (3, 6, 6, 10, 7, 3, 6),  # depthwise
    (2, 4, 8, 5, 5, 3, 2),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_modulated_conv_equals_three_formulations(shape):
    b, cin, cout, h, w, k, groups = shape
    x, weight, bias, attn = _inputs(b, cin, cout, h, w, k, groups)
    y = ops.modulated_conv(x, weight, bias, attn, groups)
    torch.testing.assert_close(y, ref.modulated_conv(x, weight, bias, attn, groups), rtol=0, atol=0)
    torch.testing.assert_close(y, unfold_matmul_conv(x, weight, bias, attn, groups), rtol=1e-12, atol=1e-11)
    torch.testing.assert_close(y, per_sample_loop_conv(x, weight, bias, attn, groups), rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("hw", [(7, 9), (2, 2), (13, 4)])
def test_attention_equals_definition(k, hw):
    x = torch.randn(3, 4, *hw, dtype=F64)
    theta = torch.tensor([0.3], dtype=F64)
    attn = ops.explainable_attention(x, theta, k)
    torch.testing.assert_close(attn, attention_by_loops(x, 0.3, k), rtol=1e-12, atol=1e-12)
    # k²·softmax: every (b, c) sums to k²
    torch.testing.assert_close(attn.sum((2, 3)), torch.full((3, 4), float(k * k), dtype=F64))


def test_adaptive_pool_matrix_matches_pytorch():
    m = torch.rand(2, 3, 11, 7, dtype=F64)
    for k in (1, 2, 3, 5, 8):
        rh = ref.adaptive_pool_matrix(11, k, dtype=F64)
        rw = ref.adaptive_pool_matrix(7, k, dtype=F64)
        torch.testing.assert_close(rh @ m @ rw.t(), F.adaptive_avg_pool2d(m, k))


def test_explainable_conv_equals_composition_and_returns_attention():
    x, weight, bias, _ = _inputs(2, 4, 6, 9, 8, 3)
    theta = torch.tensor([0.1], dtype=F64)
    y, attn = ops.explainable_conv(x, weight, bias, theta, return_attention=True)
    torch.testing.assert_close(attn, attention_by_loops(x, 0.1, 3))
    torch.testing.assert_close(y, per_sample_loop_conv(x, weight, bias, attn, 1))


@pytest.mark.parametrize("shape", SHAPES)
def test_modulated_conv_backward_equals_autograd(shape):
    b, cin, cout, h, w, k, groups = shape
    x, weight, bias, attn = _inputs(b, cin, cout, h, w, k, groups)
    leaves = [t.clone().requires_grad_() for t in (x, weight, bias, attn)]
    y = per_sample_loop_conv(*leaves, groups)
    g = torch.randn_like(y)
    expected = torch.autograd.grad(y, leaves, g)
    dx, dw, da, db = ref.modulated_conv_backward(g, x, weight, attn, groups)
    for got, want in zip((dx, dw, db, da), expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_attention_backward_is_straight_through(k):
    """dA → dx, dθ equals autograd through A computed with the sigmoid surrogate in place of the mask's
    derivative: p = pool(m) with ∂m/∂x = σ'((x−θ)/τ)/τ, evaluated at the hard mask."""
    tau = 0.5
    x = torch.randn(2, 3, 7, 10, dtype=F64, requires_grad=True)
    theta = torch.tensor([0.2], dtype=F64, requires_grad=True)
    attn = ops.explainable_attention(x, theta, k, tau)
    g = torch.randn_like(attn)
    dx, dtheta = torch.autograd.grad(attn, (x, theta), g)
    # independent: chain rule written out with autograd on the pooled probabilities only
    m_hard = (x.detach() > 0.2).to(F64)
    pooled = F.adaptive_avg_pool2d(m_hard, k).requires_grad_()
    a = torch.softmax(pooled.reshape(2, 3, -1), -1).reshape(2, 3, k, k) * k * k
    (dp,) = torch.autograd.grad(a, pooled, g)
    m_leaf = m_hard.clone().requires_grad_()
    (dm,) = torch.autograd.grad(F.adaptive_avg_pool2d(m_leaf, k), m_leaf, dp)
    s = torch.sigmoid((x.detach() - 0.2) / tau)
    dx_expected = dm * s * (1 - s) / tau
    torch.testing.assert_close(dx, dx_expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dtheta, -dx_expected.sum().reshape(1), rtol=1e-10, atol=1e-12)


def test_modulated_conv_gradcheck():
    x, weight, bias, attn = _inputs(2, 3, 4, 5, 6, 3)
    leaves = [t.requires_grad_() for t in (x, weight, bias, attn)]
    assert torch.autograd.gradcheck(lambda a, b_, c, d: ops.modulated_conv(a, b_, c, d, 1), leaves)
    x, weight, bias, attn = _inputs(1, 4, 4, 4, 5, 3, groups=4)
    leaves = [t.requires_grad_() for t in (x, weight, bias, attn)]
    assert torch.autograd.gradcheck(lambda a, b_, c, d: ops.modulated_conv(a, b_, c, d, 4), leaves)


def test_bias_none_and_no_bias_grad():
    x, weight, _, attn = _inputs(2, 3, 4, 5, 6, 3)
    x.requires_grad_()
    y = ops.modulated_conv(x, weight, None, attn)
    torch.testing.assert_close(y, per_sample_loop_conv(x.detach(), weight, None, attn, 1))
    y.sum().backward()
    assert x.grad is not None


def _opcheck(op, args):
    torch.library.opcheck(op, args)


def test_opcheck_attention_and_conv():
    x = torch.randn(2, 3, 7, 9)
    theta = torch.tensor(0.1)
    _opcheck(torch.ops.interir.explainable_attention_reference.default, (x.requires_grad_(), theta, 3, 0.5))
    x, weight, bias, attn = _inputs(2, 3, 4, 7, 9, 3, dtype=torch.float32)
    args = tuple(t.requires_grad_() for t in (x, weight, bias, attn)) + (1,)
    _opcheck(torch.ops.interir.modulated_conv_reference.default, args)
    _opcheck(torch.ops.interir.modulated_conv_reference.default, (x, weight, None, attn, 1))
    g = torch.randn(2, 4, 7, 9)
    backward_args = (g, x.detach(), weight.detach(), attn.detach(), 1)
    # The backward takes the Winograd kernel only with grad off (as autograd calls it) and the direct convolutions
    # otherwise; both agree to float round-off, not bit for bit, so each path is checked on its own.
    with torch.no_grad():
        _opcheck(torch.ops.interir.modulated_conv_backward_reference.default, backward_args)
    with cpu_kernels.disabled():
        _opcheck(torch.ops.interir.modulated_conv_backward_reference.default, backward_args)
    _opcheck(
        torch.ops.interir.explainable_attention_backward_reference.default,
        (torch.randn(2, 3, 3, 3), torch.randn(2, 3, 7, 9), torch.tensor(0.0), torch.rand(2, 3, 3, 3), 0.5),
    )


def test_bfloat16_autocast_and_dtype():
    x, weight, bias, attn = _inputs(2, 3, 4, 8, 8, 3, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ops.modulated_conv(x, weight, bias, attn)
    assert y.dtype == torch.bfloat16
    exact = per_sample_loop_conv(x.double(), weight.double(), bias.double(), attn.double(), 1)
    assert (y.double() - exact).abs().max() < 0.05 * exact.abs().max()
    a = ops.explainable_attention(x.bfloat16(), torch.tensor(0.0), 3)
    assert a.dtype == torch.float32


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ops.modulated_conv(torch.randn(3, 4, 4), torch.randn(2, 3, 3, 3), None, torch.rand(1, 3, 3, 3)), "4-D"),
        (lambda: ops.modulated_conv(torch.randn(1, 3, 4, 4), torch.randn(2, 3, 2, 2), None, torch.rand(1, 3, 2, 2)), "odd"),
        (lambda: ops.modulated_conv(torch.randn(1, 3, 4, 4), torch.randn(2, 4, 3, 3), None, torch.rand(1, 3, 3, 3)), "input channels"),
        (lambda: ops.modulated_conv(torch.randn(1, 3, 4, 4), torch.randn(2, 3, 3, 3), None, torch.rand(2, 3, 3, 3)), "attn"),
        (lambda: ops.modulated_conv(torch.randn(1, 3, 4, 4), torch.randn(2, 3, 3, 3), torch.randn(3), torch.rand(1, 3, 3, 3)), "bias"),
        (lambda: ops.modulated_conv(torch.ones(1, 3, 4, 4, dtype=torch.int64), torch.randn(2, 3, 3, 3), None, torch.rand(1, 3, 3, 3)), "floating"),
        (lambda: ops.explainable_attention(torch.randn(1, 3, 4, 4), torch.zeros(2), 3), "one element"),
    ],
)
def test_bad_arguments_raise_one_line_errors(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert "\n" not in str(info.value)
