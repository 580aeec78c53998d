"""FFT loss: equal to FSNet's full-spectrum form, to the rfft2 half-spectrum form, and its gradients."""
import pytest
import torch

from interir import ops
from interir.ops import reference as ref

F64 = torch.float64


def fsnet_loss(pred, target):
    """FSNet/MIMO-UNet's frequency term, written independently: L1Loss on stacked (Re, Im) of two fft2s."""
    p = torch.fft.fft2(pred)
    t = torch.fft.fft2(target)
    return torch.nn.L1Loss()(torch.stack((p.real, p.imag), -1), torch.stack((t.real, t.imag), -1))


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (2, 3, 7, 9), (3, 1, 5, 6), (2, 2, 1, 4), (1, 1, 4, 1)])
def test_equals_fsnet_full_spectrum_form(shape):
    pred, target = torch.rand(shape, dtype=F64), torch.rand(shape, dtype=F64)
    torch.testing.assert_close(ops.fft_l1_loss(pred, target), fsnet_loss(pred, target))
    torch.testing.assert_close(ref.fft_l1_loss_rfft(pred, target), fsnet_loss(pred, target))


def test_float32_inside_for_low_precision_inputs():
    pred, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    loss = ops.fft_l1_loss(pred.bfloat16(), target.bfloat16())
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, fsnet_loss(pred.bfloat16().float(), target.bfloat16().float()))


@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 2, 8, 6)])
def test_backward_equals_autograd_of_fsnet_form(shape):
    pred, target = torch.rand(shape, dtype=F64, requires_grad=True), torch.rand(shape, dtype=F64, requires_grad=True)
    expected = torch.autograd.grad(fsnet_loss(pred, target) * 1.7, (pred, target))
    got = torch.autograd.grad(ops.fft_l1_loss(pred, target) * 1.7, (pred, target))
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)


def test_gradcheck():
    pred = torch.rand(2, 2, 5, 6, dtype=F64, requires_grad=True)
    target = torch.rand(2, 2, 5, 6, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(ops.fft_l1_loss, (pred, target))


def test_opcheck():
    pred, target = torch.rand(2, 3, 6, 7, requires_grad=True), torch.rand(2, 3, 6, 7, requires_grad=True)
    torch.library.opcheck(torch.ops.interir.fft_l1_loss_reference.default, (pred, target, True))
    torch.library.opcheck(torch.ops.interir.fft_l1_loss_backward_reference.default,
                          (torch.tensor(1.0), pred.detach(), target.detach(), torch.empty(0)))


def test_zero_for_identical_images_and_errors():
    x = torch.rand(1, 3, 9, 9)
    assert ops.fft_l1_loss(x, x.clone()).item() == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        ops.fft_l1_loss(x, x[..., :8])
