"""Kronecker operator and RESM pieces against the explicit Kronecker-product matrix, adjointness, gradients."""
import pytest
import torch

from interir import ops
from interir.ops import reference as ref

F64 = torch.float64


def _inputs(b, c, h, w, dtype=F64):
    return (torch.randn(b, c, h, w, dtype=dtype), torch.randn(b, c, h, h, dtype=dtype),
            torch.randn(b, c, w, w, dtype=dtype))


def kron_matrix_apply(x, p1, p2):
    """vec_row(P1·X·P2) = (P1 ⊗ P2ᵀ)·vec_row(X): the huge HW×HW operator that the factorisation avoids."""
    b, c, h, w = x.shape
    out = torch.empty_like(x)
    for i in range(b):
        for j in range(c):
            big = torch.kron(p1[i, j].contiguous(), p2[i, j].t().contiguous())
            out[i, j] = (big @ x[i, j].reshape(-1)).reshape(h, w)
    return out


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 7), (3, 2, 8, 3), (1, 4, 13, 11)])
def test_kron_apply_equals_kronecker_matrix(shape):
    x, p1, p2 = _inputs(*shape)
    torch.testing.assert_close(ops.kron_apply(x, p1, p2), kron_matrix_apply(x, p1, p2))
    torch.testing.assert_close(
        ops.kron_apply(x, p1, p2, transpose=True),
        kron_matrix_apply(x, p1.transpose(-1, -2), p2.transpose(-1, -2)),
    )


def test_transpose_is_the_adjoint():
    x, p1, p2 = _inputs(2, 3, 6, 9)
    y = torch.randn_like(x)
    lhs = (ops.kron_apply(x, p1, p2) * y).sum()
    rhs = (x * ops.kron_apply(y, p1, p2, transpose=True)).sum()
    torch.testing.assert_close(lhs, rhs)


def test_normal_operator_from_grams():
    x, p1, p2 = _inputs(2, 3, 6, 9)
    g1, g2 = ops.kron_gram(p1, p2)
    expected = ops.kron_apply(ops.kron_apply(x, p1, p2), p1, p2, transpose=True)  # Pᵀ(P(X))
    torch.testing.assert_close(ops.kron_normal(x, g1, g2), expected)


def test_kron_step_formula():
    x, p1, p2 = _inputs(2, 3, 6, 5)
    f, r = torch.randn_like(x), torch.randn_like(x)
    g1, g2 = ops.kron_gram(p1, p2)
    eta = torch.tensor(0.37, dtype=F64)
    expected = x - 0.37 * (kron_matrix_apply(f, g1, g2) + r)
    torch.testing.assert_close(ops.kron_step(x, f, g1, g2, r, eta), expected)


@pytest.mark.parametrize("transpose", [False, True])
def test_kron_apply_gradcheck(transpose):
    leaves = [t.requires_grad_() for t in _inputs(2, 2, 4, 3)]
    assert torch.autograd.gradcheck(lambda a, b, c: ops.kron_apply(a, b, c, transpose), leaves)


def test_kron_step_gradcheck():
    x, p1, p2 = _inputs(2, 2, 3, 4)
    g1, g2 = ops.kron_gram(p1, p2)
    leaves = [t.clone().requires_grad_() for t in (x, torch.randn_like(x), g1, g2, torch.randn_like(x))]
    eta = torch.tensor([0.2], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(ops.kron_step, (*leaves, eta))


@pytest.mark.parametrize("transpose", [False, True])
def test_explicit_backward_equals_autograd(transpose):
    x, p1, p2 = _inputs(3, 2, 5, 7)
    leaves = [t.clone().requires_grad_() for t in (x, p1, p2)]
    a, b = (leaves[1].transpose(-1, -2), leaves[2].transpose(-1, -2)) if transpose else (leaves[1], leaves[2])
    y = torch.einsum("bcij,bcjk,bckl->bcil", a, leaves[0], b)
    g = torch.randn_like(y)
    for got, want in zip(ref.kron_apply_backward(g, x, p1, p2, transpose), torch.autograd.grad(y, leaves, g)):
        torch.testing.assert_close(got, want)


def test_non_contiguous_inputs():
    x, p1, p2 = _inputs(2, 3, 6, 6)
    xt, p1t, p2t = x.transpose(-1, -2), p1.transpose(-1, -2), p2.transpose(-1, -2)
    assert not xt.is_contiguous()
    torch.testing.assert_close(ops.kron_apply(xt, p1t, p2t), kron_matrix_apply(xt.contiguous(), p1t.contiguous(), p2t.contiguous()))


def test_opcheck():
    x, p1, p2 = (t.float().requires_grad_() for t in _inputs(2, 3, 5, 4))
    torch.library.opcheck(torch.ops.interir.kron_apply_reference.default, (x, p1, p2, True))
    for transpose in (False, True):  # the fake kernel must match the real one's strides in both cases
        torch.library.opcheck(torch.ops.interir.kron_apply_backward_reference.default,
                              (torch.randn(2, 3, 5, 4), x.detach(), p1.detach(), p2.detach(), transpose))
    f, r = torch.randn(2, 3, 5, 4, requires_grad=True), torch.randn(2, 3, 5, 4, requires_grad=True)
    eta = torch.tensor(0.1, requires_grad=True)
    torch.library.opcheck(torch.ops.interir.kron_step_reference.default, (x, f, p1, p2, r, eta))
    torch.library.opcheck(torch.ops.interir.kron_step_backward_reference.default,
                          (torch.randn(2, 3, 5, 4), f.detach(), p1.detach(), p2.detach(), r.detach(), eta.detach()))


def test_autocast_bfloat16():
    x, p1, p2 = (t.float() for t in _inputs(2, 3, 8, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ops.kron_apply(x, p1, p2)
    assert y.dtype == torch.bfloat16
    exact = kron_matrix_apply(x.double(), p1.double(), p2.double())
    assert (y.double() - exact).abs().max() < 0.05 * exact.abs().max()


def test_shape_errors_name_the_argument():
    x, p1, p2 = _inputs(2, 3, 5, 4)
    with pytest.raises(ValueError, match="P1 must be"):
        ops.kron_apply(x, p2, p2)
    with pytest.raises(ValueError, match="P2 must be"):
        ops.kron_apply(x, p1, p1)
    with pytest.raises(ValueError, match="eta must have one element"):
        ops.kron_step(x, x, p1, p2, x, torch.ones(2))
