"""Edge inputs of the ops front-ends: an empty batch, Python numbers for θ and η, mismatched shapes, an empty
loss; one clear ValueError or a correct result, on every backend."""
import pytest
import torch

from interir import ops
from tests.conftest import KERNEL_DEVICE

def test_an_empty_batch_gives_an_empty_result_and_zero_gradients(any_backend):
    dev = KERNEL_DEVICE
    x = torch.rand(0, 4, 7, 9, device=dev, requires_grad=True)
    weight = torch.rand(5, 4, 3, 3, device=dev, requires_grad=True)
    bias = torch.rand(5, device=dev, requires_grad=True)
    theta = torch.zeros(1, device=dev, requires_grad=True)
    y, attn = ops.explainable_conv(x, weight, bias, theta, return_attention=True, backend=any_backend)
    assert y.shape == (0, 5, 7, 9) and attn.shape == (0, 4, 3, 3)
    y.sum().backward()
    assert x.grad.shape == x.shape and torch.equal(weight.grad, torch.zeros_like(weight))
    assert torch.equal(bias.grad, torch.zeros_like(bias)) and torch.equal(theta.grad, torch.zeros_like(theta))
    p = torch.rand(0, 4, 7, 7, device=dev)
    q = torch.rand(0, 4, 9, 9, device=dev)
    assert ops.kron_apply(x.detach(), p, q, backend=any_backend).shape == (0, 4, 7, 9)
    assert ops.kron_step(x.detach(), x.detach(), p, q, x.detach(), torch.tensor(0.1, device=dev),
                         backend=any_backend).shape == (0, 4, 7, 9)


def test_the_triton_backend_says_it_can_serve_an_empty_batch():
    reason = ops.available_backends()["triton"]
    if reason is not None:
        pytest.skip(f"backend 'triton' unavailable: {reason}")
    from interir.kernels import explainable_attention, modulated_conv

    device = KERNEL_DEVICE  # CPU: the tests run Triton's interpreter
    x = torch.rand(0, 4, 7, 9, device=device)
    assert explainable_attention.why_not(x, torch.zeros((), device=device), 3, 0.5) is None
    w, a = torch.rand(5, 4, 3, 3, device=device), torch.rand(0, 4, 3, 3, device=device)
    assert modulated_conv.why_not(x, w, None, a, 1) is None


def test_python_numbers_for_theta_and_eta():
    x = torch.rand(2, 4, 6, 8)
    weight, bias = torch.rand(5, 4, 3, 3), torch.rand(5)
    torch.testing.assert_close(ops.explainable_conv(x, weight, bias, 0.25),
                               ops.explainable_conv(x, weight, bias, torch.tensor([0.25])))
    g1, g2 = torch.rand(2, 4, 6, 6), torch.rand(2, 4, 8, 8)
    torch.testing.assert_close(ops.kron_step(x, x, g1, g2, x, 0.1), ops.kron_step(x, x, g1, g2, x, torch.tensor(0.1)))
    with pytest.raises(ValueError, match="theta must be a number or a one-element tensor"):
        ops.explainable_conv(x, weight, bias, "0.25")
    with pytest.raises(ValueError, match="eta must have one element"):
        ops.kron_step(x, x, g1, g2, x, torch.rand(2))


@pytest.mark.parametrize("p1, p2, needle", [
    ((2, 4, 6, 5), (2, 4, 8, 8), "P1 must be a stack of square"),
    ((2, 4, 6, 6), (2, 4, 8, 7), "P2 must be a stack of square"),
    ((2, 4, 6, 6), (2, 3, 8, 8), "share their leading"),
    ((6,), (2, 4, 8, 8), "P1 must be a stack of square"),
])
def test_kron_gram_checks_its_shapes(p1, p2, needle):
    with pytest.raises(ValueError, match=needle):
        ops.kron_gram(torch.rand(p1), torch.rand(p2))


def test_an_empty_fft_loss_is_an_error_not_nan(any_backend):
    with pytest.raises(ValueError, match="inputs are empty"):
        ops.fft_l1_loss(torch.rand(0, 3, 8, 8), torch.rand(0, 3, 8, 8), backend=any_backend)


@pytest.mark.parametrize("kernel_size", [2.5, 3.0, True, 0])
def test_kernel_size_must_be_an_integer(kernel_size):
    with pytest.raises(ValueError, match="kernel_size must be an integer"):
        ops.explainable_attention(torch.rand(1, 2, 5, 5), torch.zeros(()), kernel_size)


@pytest.mark.parametrize("shape", [(1, 0, 5, 5), (1, 2, 0, 5), (1, 2, 5, 0)])
def test_empty_channels_or_maps_are_refused(shape):
    with pytest.raises(ValueError, match="C, H, W ≥ 1"):
        ops.explainable_conv(torch.rand(shape), torch.rand(3, shape[1], 3, 3), None, torch.zeros(()))
