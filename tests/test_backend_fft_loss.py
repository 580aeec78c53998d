"""Fused backends of the FFT loss against the float64 reference (full-spectrum FSNet form), forward and both
gradients, odd and even widths, H = 1 and W = 1.

Tolerance rule (docs/testing.md): a fused result's error against the float64 reference may be at most 2× the error
of the reference run in the same dtype (float32 here: the loss always computes in float32), plus a small
floor. Outputs are NaN-poisoned before the kernels write them (INTERIR_POISON_OUTPUTS=1; the int8 signs get
127). The gradient of |·| jumps where a spectral value crosses 0, so the random inputs are redrawn until no
value (other than the imaginary parts that are exactly 0 for real input) lies within float32 noise of 0.
"""
import pytest
import torch

from interir import ops
from interir.ops import reference as ref
from interir.ops.verify import assert_within_reference_error
from tests.conftest import KERNEL_DEVICE, skip_triton_half_on_cpu, triton_kernels

DEVICE = KERNEL_DEVICE
F64 = torch.float64
FLOOR = 2e-6  # the floor of the tolerance rule, relative to the largest magnitude of the exact result


@pytest.fixture
def triton_fft(monkeypatch):
    return triton_kernels("fft_loss", monkeypatch)


def check_rule(got, same_dtype, exact, what=""):
    """The tolerance rule with a floor of FLOOR·max|exact|."""
    assert_within_reference_error(got, same_dtype, exact, FLOOR * exact.abs().max().item(), what)


def _self_conjugate(h, w):
    """Mask of the frequencies whose imaginary part is exactly 0 for real input (rows 0, H/2 × cols 0, W/2)."""
    rows = torch.zeros(h, dtype=torch.bool)
    cols = torch.zeros(w, dtype=torch.bool)
    rows[0] = cols[0] = True
    if h % 2 == 0:
        rows[h // 2] = True
    if w % 2 == 0:
        cols[w // 2] = True
    return rows[:, None] & cols[None, :]


def _inputs(shape, dtype=torch.float32):
    """pred, target whose difference has no spectral value within float32 noise of 0 (where |·| has a kink)."""
    for _ in range(50):
        pred, target = torch.rand(shape).to(dtype), torch.rand(shape).to(dtype)
        spec = torch.fft.fft2(pred.to(F64) - target.to(F64))
        typical = spec.abs().pow(2).mean().sqrt().item()
        im = spec.imag.abs().masked_fill(_self_conjugate(*shape[-2:]), float("inf"))
        if min(spec.real.abs().min().item(), im.min().item()) > 5e-6 * typical:  # ≈ 20× float32 FFT noise
            break
    return pred.to(DEVICE), target.to(DEVICE)


def _grads(fn, pred, target, scale):
    leaves = [t.detach().clone().requires_grad_() for t in (pred, target)]
    loss = fn(*leaves)
    return (loss, *torch.autograd.grad(loss * scale, leaves))


def _check(backend, shape, dtype=torch.float32):
    pred, target = _inputs(shape, dtype)
    scale = 0.5 + torch.rand(()).item()
    got = _grads(lambda p, t: ops.fft_l1_loss(p, t, backend=backend), pred, target, scale)
    same = _grads(lambda p, t: ops.fft_l1_loss(p, t, backend="reference"), pred, target, scale)
    exact = _grads(ref.fft_l1_loss, pred.to(F64), target.to(F64), scale)
    assert got[0].dtype == torch.float32 and got[0].dim() == 0
    for name, a, s, e in zip(("loss", "dpred", "dtarget"), got, same, exact):
        check_rule(a, s, e, f"fft_l1_loss{shape} {name}")


@pytest.mark.parametrize("shape", [
    (1, 3, 8, 8), (3, 2, 7, 9), (1, 1, 1, 6), (2, 1, 5, 1), (1, 1, 1, 1), (2, 3, 6, 5), (1, 2, 1, 7),
    (3, 1, 4, 1), (5, 6), (2, 1, 2, 3, 4),
])
def test_loss_and_gradients(backend, shape):
    _check(backend, shape)


def test_larger_shapes(backend):
    _check(backend, (3, 3, 70, 40))
    _check(backend, (1, 1, 33, 17))


def _backward_function(backend):
    """The backend's backward op, with nothing kept by a forward (every backend then recomputes)."""
    op = getattr(torch.ops.interir, f"fft_l1_loss_backward_{backend}")
    return lambda g, pred, target: op(g, pred, target, pred.new_empty((0,)))


@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 2, 8, 6), (3, 1, 1, 5), (1, 1, 6, 1)])
def test_backward_directly(backend, shape):
    pred, target = _inputs(shape)
    g = torch.tensor(0.3 + torch.rand(()).item(), device=DEVICE)
    got = _backward_function(backend)(g, pred, target)
    same = ref.fft_l1_loss_backward(g, pred, target)
    exact = ref.fft_l1_loss_backward(g.to(F64), pred.to(F64), target.to(F64))
    for name, a, s, e in zip(("dpred", "dtarget"), got, same, exact):
        check_rule(a, s, e, f"fft_l1_loss_backward{shape} {name}")


def test_non_contiguous_and_one_sided_gradient(backend):
    pred, target = _inputs((2, 3, 9, 12))
    pred_t = pred.transpose(-1, -2).contiguous().transpose(-1, -2)  # same values, column-major
    target_s = torch.cat([target, target], -1)[..., ::2]          # same shape, strided
    target_s.copy_(target)
    assert not pred_t.is_contiguous() and not target_s.is_contiguous()
    leaf = pred_t.detach().requires_grad_()
    loss = ops.fft_l1_loss(leaf, target_s, backend=backend)
    (dpred,) = torch.autograd.grad(loss, leaf)
    leaf_ref = pred.detach().requires_grad_()
    loss_ref = ops.fft_l1_loss(leaf_ref, target, backend="reference")
    (dpred_ref,) = torch.autograd.grad(loss_ref, leaf_ref)
    exact = ref.fft_l1_loss_backward(torch.tensor(1.0, dtype=F64), pred.to(F64), target.to(F64))[0]
    check_rule(loss, loss_ref, ref.fft_l1_loss(pred.to(F64), target.to(F64)), "non-contiguous loss")
    check_rule(dpred, dpred_ref, exact, "non-contiguous dpred")


def test_bfloat16_inputs_compute_in_float32(backend):
    pred, target = _inputs((2, 3, 10, 7), torch.bfloat16)
    got = _grads(lambda p, t: ops.fft_l1_loss(p, t, backend=backend), pred, target, 1.0)
    same = _grads(lambda p, t: ops.fft_l1_loss(p, t, backend="reference"), pred, target, 1.0)
    exact = _grads(ref.fft_l1_loss, pred.to(F64), target.to(F64), 1.0)
    assert got[0].dtype == torch.float32 and got[1].dtype == torch.bfloat16
    check_rule(got[0], same[0], exact[0], "bf16 loss")
    for a, s in zip(got[1:], same[1:]):  # both round the same float32 gradient to bfloat16
        assert (a.float() - s.float()).abs().max() <= 2 ** -7 * s.float().abs().max()


def test_deterministic(backend):
    pred, target = _inputs((3, 2, 31, 20))
    first = _grads(lambda p, t: ops.fft_l1_loss(p, t, backend=backend), pred, target, 1.3)
    second = _grads(lambda p, t: ops.fft_l1_loss(p, t, backend=backend), pred, target, 1.3)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("index", range(3))
def test_each_triton_config_alone(triton_fft, index):
    cfg = triton_fft.CONFIGS[index]
    shape = (2, 3, 45, 2 * cfg.BLOCK // 45 + 7)  # several programs, a masked tail
    pred, target = _inputs(shape)
    with torch.no_grad():
        loss = triton_fft.fft_l1_loss(pred, target, config=cfg)
    check_rule(loss, ref.fft_l1_loss(pred, target), ref.fft_l1_loss(pred.to(F64), target.to(F64)), f"{cfg} loss")
    g = torch.tensor(0.7, device=DEVICE)
    got = triton_fft.fft_l1_loss_backward(g, pred, target, config=index)
    same = ref.fft_l1_loss_backward(g, pred, target)
    exact = ref.fft_l1_loss_backward(g.to(F64), pred.to(F64), target.to(F64))
    for name, a, s, e in zip(("dpred", "dtarget"), got, same, exact):
        check_rule(a, s, e, f"{cfg} {name}")


@pytest.mark.parametrize("shape", [(1, 2, 6, 5), (2, 1, 7, 8)])
def test_saved_signs(triton_fft, shape):
    """The int8 signs: shape …×H×(W/2+1)×2, values in {−1, 0, 1}, equal to the float64 spectrum's signs, 0 for
    the imaginary parts that are exactly 0, and exactly Hermitian in columns 0 and W/2."""
    pred, target = _inputs(shape)
    h, w = shape[-2:]
    op = torch.ops.interir.fft_l1_loss_triton
    loss, signs = op(pred, target, True)
    assert signs.dtype == torch.int8 and signs.shape == (*shape[:-1], w // 2 + 1, 2)
    assert set(signs.unique().tolist()) <= {-1, 0, 1}
    spec = torch.view_as_real(torch.fft.rfft2(pred.double().cpu() - target.double().cpu())).sign()
    spec[..., 1][..., _self_conjugate(h, w)[:, : w // 2 + 1]] = 0
    assert torch.equal(signs.cpu().double(), spec.cpu())
    for col in {0, w // 2} if w % 2 == 0 else {0}:
        column = signs[..., col, :].cpu()  # …×H×2
        twin = column[..., (-torch.arange(h)) % h, :]
        assert torch.equal(column[..., 0], twin[..., 0]) and torch.equal(column[..., 1], -twin[..., 1])
    loss2, none = op(pred, target, False)
    assert none.numel() == 0 and torch.equal(loss, loss2)
    leaf = pred.clone().requires_grad_()
    with pytest.raises(RuntimeError, match="keep=False"):
        op(leaf, target, False)[0].backward()


@pytest.mark.parametrize("h, w", [(6, 8), (7, 5), (1, 4), (4, 1), (1, 1)])
def test_reduction_kernel_on_a_noisy_spectrum(triton_fft, h, w):
    """The reduction on a spectrum that is not exactly Hermitian (float noise in a real FFT's output): the
    imaginary parts at self-conjugate frequencies count 0 and get sign 0; rows past H/2 of columns 0 and W/2
    take their twin's signs (Re equal, Im negated); the weights count twinned columns twice."""
    wh = w // 2 + 1
    spec = torch.randn(3, h, wh, 2, device=DEVICE)
    signs = torch.full(spec.shape, 99, dtype=torch.int8, device=DEVICE)
    partials = triton_fft.reduce_half_spectrum(spec, w, signs, config=0)
    dead = torch.zeros(h, wh, 2, dtype=torch.bool)
    dead[..., 1] = _self_conjugate(h, w)[:, :wh]
    weight = torch.full((wh,), 2.0)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    s = spec.cpu().double()
    expected_sum = (s.abs() * weight[:, None].double()).masked_fill(dead, 0).sum()
    assert abs(partials.double().sum().item() - expected_sum.item()) <= 1e-5 * expected_sum.item()
    expected = s.sign()
    for col in ({0, w // 2} if w % 2 == 0 else {0}):
        for k in range(h // 2 + 1, h):
            expected[:, k, col, 0] = s[:, h - k, col, 0].sign()
            expected[:, k, col, 1] = -s[:, h - k, col, 1].sign()
    expected = expected.masked_fill(dead, 0)
    assert torch.equal(signs.cpu().double(), expected)


def test_why_not_reasons(triton_fft, monkeypatch):
    pred, target = (torch.rand(1, 1, 4, 4, dtype=F64, device=DEVICE) for _ in range(2))
    reason = triton_fft.why_not(pred, target)
    assert reason and "float64" in reason and "\n" not in reason
    with pytest.raises(ops.BackendUnavailable, match="backend 'triton' cannot run fft_l1_loss: .*float64"):
        ops.fft_l1_loss(pred, target, backend="triton")
    if DEVICE == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        reason = triton_fft.why_not(pred.float(), target.float())
        assert reason and "CUDA" in reason
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert triton_fft.why_not(pred.float(), target.float()) is None


@pytest.mark.parametrize("keep", [True, False])
def test_opcheck(backend, keep):
    """Every backend's op pair has the one contract: (loss, saved) = fwd(pred, target, keep) and
    (dpred, dtarget) = bwd(grad, pred, target, saved); the Triton backend keeps its int8 signs in `saved`."""
    pred, target = _inputs((2, 2, 5, 6))
    ns = torch.ops.interir
    fwd, bwd = getattr(ns, f"fft_l1_loss_{backend}"), getattr(ns, f"fft_l1_loss_backward_{backend}")
    torch.library.opcheck(fwd.default, (pred.clone().requires_grad_(keep), target, keep))
    saved = fwd(pred, target, keep)[1]
    torch.library.opcheck(bwd.default, (torch.tensor(1.0, device=DEVICE), pred, target, saved))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (4, 3, 37, 50), (1, 1, 255, 129)])
def test_half_precision_inputs(backend, dtype, shape):
    """bfloat16/float16 inputs: on a GPU, or the CUDA kernels' host emulation."""
    skip_triton_half_on_cpu(backend)
    pred, target = _inputs(shape, dtype)
    got = _grads(lambda p, t: ops.fft_l1_loss(p, t, backend=backend), pred, target, 1.0)
    same = _grads(lambda p, t: ops.fft_l1_loss(p, t, backend="reference"), pred, target, 1.0)
    exact = _grads(ref.fft_l1_loss, pred.to(F64), target.to(F64), 1.0)
    check_rule(got[0], same[0], exact[0], f"{dtype} loss")
    for a, s in zip(got[1:], same[1:]):
        assert a.dtype == dtype
        assert (a.float() - s.float()).abs().max() <= 2 ** -7 * s.float().abs().max()
