"""Fused backends of the Kronecker operator and the RESM step against the float64 reference.

Tolerance rule (docs/testing.md): a fused result's error against the float64 reference may be at most 2× the
error of the reference run in the same dtype, plus a small floor. Outputs are NaN-poisoned before the kernels
write them (INTERIR_POISON_OUTPUTS=1), so an element no program wrote fails. Without a GPU the Triton kernels
run under the Triton interpreter and the `cuda` kernels under their host emulation, on CPU tensors.
"""
import pytest
import torch

from interir import ops
from interir.ops import reference as ref
from interir.ops.verify import assert_within_reference_error
from tests.conftest import KERNEL_DEVICE, skip_triton_half_on_cpu, triton_kernels

DEVICE = KERNEL_DEVICE
F64 = torch.float64
# The floor of the tolerance rule, relative to the largest Σ|terms| of an output element: the reference run on
# absolute values (|x|, |P1|, |P2|, |dY|, −|η|, …), the scale of any summation error (about 1.7 ulp of it
# for float32). It only matters where cancellation makes the same-dtype reference's error unusually small.
FLOOR = {torch.float32: 1e-7, torch.bfloat16: 8e-3, torch.float16: 1e-3}


@pytest.fixture
def triton_kron(monkeypatch):
    return triton_kernels("kron", monkeypatch)


def check_rule(got, same_dtype, exact, magnitude, what="", *, compute_dtype=None, terms=1):
    """The tolerance rule with a floor of FLOOR[dtype]·max(magnitude).

    A one-element output summed from `terms` products computed in a 16-bit `compute_dtype` (dη from bfloat16
    maps) gets at least FLOOR[compute_dtype]·magnitude/√terms: its rounding errors add up like a random walk,
    and a kernel exactly as accurate as the reference would otherwise exceed 2× the reference's own error
    about 30% of the time (seen on an H200: Triton float16 dη error 0.052, reference 0.016, |dη| 16)."""
    floor = FLOOR[same_dtype.dtype if same_dtype.dtype in FLOOR else torch.float32] * magnitude.abs().max().item()
    if compute_dtype in (torch.bfloat16, torch.float16) and got.numel() == 1 and terms > 1:
        floor = max(floor, FLOOR[compute_dtype] * magnitude.abs().max().item() / terms**0.5)
    assert_within_reference_error(got, same_dtype, exact, floor, what)


def check_all(names, got, same, exact, magnitude, what):
    """check_rule on each output; the first output's dtype and size are the computation's."""
    assert len(got) == len(names)
    for name, a, s, e, m in zip(names, got, same, exact, magnitude):
        check_rule(a, s, e, m, f"{what} {name}", compute_dtype=got[0].dtype, terms=got[0].numel())


def ref_apply_all(x, p1, p2, transpose, g):
    """(y, dx, dp1, dp2) by the reference."""
    return (ref.kron_apply(x, p1, p2, transpose), *ref.kron_apply_backward(g, x, p1, p2, transpose))


def ref_step_all(x, f, g1, g2, r, eta, g):
    """(out, dx, df, dgram1, dgram2, dr, deta) by the reference."""
    return (ref.kron_step(x, f, g1, g2, r, eta), *ref.kron_step_backward(g, f, g1, g2, r, eta))


def exact_and_magnitude(fn, *args, eta_at=None):
    """fn on float64 copies of args, and on their absolute values (η negated, so that X − η·V adds up)."""
    a64 = [t.to(F64) if isinstance(t, torch.Tensor) else t for t in args]
    mags = [t.abs() if isinstance(t, torch.Tensor) else t for t in a64]
    if eta_at is not None:
        mags[eta_at] = -mags[eta_at]
    return fn(*a64), fn(*mags)


APPLY_NAMES = ("y", "dx", "dp1", "dp2")
STEP_NAMES = ("out", "dx", "df", "dgram1", "dgram2", "dr", "deta")


def _apply_inputs(b, c, h, w, dtype=torch.float32):
    x = torch.randn(b, c, h, w, dtype=F64)
    p1 = torch.randn(b, c, h, h, dtype=F64) / h**0.5
    p2 = torch.randn(b, c, w, w, dtype=F64) / w**0.5
    return [t.to(DEVICE, dtype) for t in (x, p1, p2)]


def _step_inputs(b, c, h, w, dtype=torch.float32):
    x, f, r = (torch.randn(b, c, h, w, dtype=F64) for _ in range(3))
    p1 = torch.randn(b, c, h, h, dtype=F64) / h**0.5
    p2 = torch.randn(b, c, w, w, dtype=F64) / w**0.5
    g1, g2 = ref.kron_gram(p1, p2)
    eta = torch.tensor(0.05 + 0.5 * torch.rand(()).item(), dtype=F64)
    return [t.to(DEVICE, dtype) for t in (x, f, g1, g2, r)] + [eta.to(DEVICE, torch.float32)]


def _grads(fn, leaves, grad_out):
    leaves = [t.detach().clone().requires_grad_() for t in leaves]
    out = fn(*leaves)
    return (out, *torch.autograd.grad(out, leaves, grad_out))


def _check_apply(backend, shape, transpose, dtype=torch.float32):
    x, p1, p2 = _apply_inputs(*shape, dtype=dtype)
    g = torch.randn_like(x)
    got = _grads(lambda a, b, c: ops.kron_apply(a, b, c, transpose, backend=backend), (x, p1, p2), g)
    same = _grads(lambda a, b, c: ops.kron_apply(a, b, c, transpose, backend="reference"), (x, p1, p2), g)
    exact, mag = exact_and_magnitude(ref_apply_all, x, p1, p2, transpose, g)
    check_all(APPLY_NAMES, got, same, exact, mag, f"kron_apply{shape} transpose={transpose}")


def _check_step(backend, shape, dtype=torch.float32):
    inputs = _step_inputs(*shape, dtype=dtype)
    g = torch.randn_like(inputs[0])
    got = _grads(lambda *a: ops.kron_step(*a, backend=backend), inputs, g)
    same = _grads(lambda *a: ops.kron_step(*a, backend="reference"), inputs, g)
    exact, mag = exact_and_magnitude(ref_step_all, *inputs, g, eta_at=5)
    check_all(STEP_NAMES, got, same, exact, mag, f"kron_step{shape}")


SHAPES = [(1, 1, 1, 1), (3, 2, 5, 17), (1, 3, 17, 5), (3, 1, 33, 1), (1, 1, 1, 33)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("transpose", [False, True])
def test_kron_apply_forward_and_gradients(backend, shape, transpose):
    _check_apply(backend, shape, transpose)


@pytest.mark.parametrize("shape", SHAPES)
def test_kron_step_forward_and_gradients(backend, shape):
    _check_step(backend, shape)


def test_larger_shape(backend):
    _check_apply(backend, (1, 2, 70, 40), True)
    _check_step(backend, (1, 1, 40, 70))


@pytest.mark.parametrize("transpose", [False, True])
def test_backward_ops_directly(backend, transpose):
    """The backward ops of the backend, called directly (not through autograd)."""
    x, p1, p2 = _apply_inputs(3, 2, 9, 20)
    g = torch.randn_like(x)
    got = getattr(torch.ops.interir, f"kron_apply_backward_{backend}")(g, x, p1, p2, transpose)
    same = ref.kron_apply_backward(g, x, p1, p2, transpose)
    exact, mag = exact_and_magnitude(ref_apply_all, x, p1, p2, transpose, g)
    check_all(APPLY_NAMES[1:], got, same, exact[1:], mag[1:], "kron_apply_backward")

    x, f, g1, g2, r, eta = _step_inputs(1, 2, 20, 9)
    gout = torch.randn_like(f)
    got = getattr(torch.ops.interir, f"kron_step_backward_{backend}")(gout, f, g1, g2, r, eta)
    same = ref.kron_step_backward(gout, f, g1, g2, r, eta)
    exact, mag = exact_and_magnitude(ref_step_all, x, f, g1, g2, r, eta, gout, eta_at=5)
    check_all(STEP_NAMES[1:], got, same, exact[1:], mag[1:], "kron_step_backward")


def test_non_contiguous_inputs(backend):
    _, p1, p2 = _apply_inputs(2, 3, 12, 7)
    xt = torch.randn(2, 7, 3, 12, device=DEVICE).permute(0, 2, 3, 1)  # B×C×h×w view of another layout
    p1t, p2t = p1.transpose(-1, -2), p2.transpose(-1, -2)
    assert not xt.is_contiguous() and not p1t.is_contiguous()
    g = torch.randn(2, 3, 7, 12, device=DEVICE).transpose(-1, -2)
    for transpose in (False, True):
        got = _grads(lambda a, b, c: ops.kron_apply(a, b, c, transpose, backend=backend), (xt, p1t, p2t), g)
        same = ref_apply_all(xt, p1t, p2t, transpose, g)
        exact, mag = exact_and_magnitude(ref_apply_all, xt, p1t, p2t, transpose, g)
        check_all(APPLY_NAMES, got, same, exact, mag, f"non-contiguous kron_apply transpose={transpose}")
    x, f, g1, g2, r, eta = _step_inputs(2, 3, 7, 12)
    big = torch.randn(2, 3, 14, 12, device=DEVICE)[:, :, ::2]  # strided rows
    args = (big, f.transpose(-1, -2).contiguous().transpose(-1, -2), g1.transpose(-1, -2), g2, r, eta.reshape(1))
    assert not big.is_contiguous() and not args[1].is_contiguous()
    gout = torch.randn_like(x)
    got = _grads(lambda *a: ops.kron_step(*a, backend=backend), args, gout)
    same = ref_step_all(*args, gout)
    exact, mag = exact_and_magnitude(ref_step_all, *args, gout, eta_at=5)
    check_all(STEP_NAMES, got, same, exact, mag, "non-contiguous kron_step")


def test_deterministic(backend):
    x, p1, p2 = _apply_inputs(3, 2, 21, 18)
    g = torch.randn_like(x)
    first = _grads(lambda a, b, c: ops.kron_apply(a, b, c, True, backend=backend), (x, p1, p2), g)
    second = _grads(lambda a, b, c: ops.kron_apply(a, b, c, True, backend=backend), (x, p1, p2), g)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    inputs = _step_inputs(3, 2, 18, 21)
    first = _grads(lambda *a: ops.kron_step(*a, backend=backend), inputs, g.transpose(-1, -2).contiguous())
    second = _grads(lambda *a: ops.kron_step(*a, backend=backend), inputs, g.transpose(-1, -2).contiguous())
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("index", range(5))
def test_each_triton_config_alone(triton_kron, index):
    """Every config of the list, chosen explicitly, on shapes giving several tiles and masked edges."""
    cfg = triton_kron.CONFIGS[index]
    h, w = cfg.BM + 3, (cfg.BN // 2 + 5 if index else cfg.BN + 9)
    x, p1, p2 = _apply_inputs(2, 1, h, w)
    g = torch.randn_like(x)
    for transpose in (False, True):
        got = (triton_kron.kron_apply(x, p1, p2, transpose, config=cfg),
               *triton_kron.kron_apply_backward(g, x, p1, p2, transpose, config=index))
        exact, mag = exact_and_magnitude(ref_apply_all, x, p1, p2, transpose, g)
        check_all(APPLY_NAMES, got, ref_apply_all(x, p1, p2, transpose, g), exact, mag, f"{cfg} t={transpose}")
    args = _step_inputs(1, 2, w, h)
    gout = torch.randn_like(args[0])
    got = (triton_kron.kron_step(*args, config=cfg), *triton_kron.kron_step_backward(gout, *args[1:], config=cfg))
    exact, mag = exact_and_magnitude(ref_step_all, *args, gout, eta_at=5)
    check_all(STEP_NAMES, got, ref_step_all(*args, gout), exact, mag, f"{cfg} kron_step")


def test_why_not_reasons(triton_kron, monkeypatch):
    x, p1, p2 = _apply_inputs(1, 1, 3, 4, dtype=F64)
    reason = triton_kron.apply_why_not(x, p1, p2, False)
    assert reason and "float64" in reason and "\n" not in reason
    with pytest.raises(ops.BackendUnavailable, match="backend 'triton' cannot run kron_apply: .*float64"):
        ops.kron_apply(x, p1, p2, backend="triton")
    if DEVICE == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        reason = triton_kron.apply_why_not(x.float(), p1.float(), p2.float(), False)
        assert reason and "CUDA" in reason
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert triton_kron.apply_why_not(*(t.float() for t in (x, p1, p2)), True) is None
    if DEVICE == "cpu":  # the interpreter's bfloat16 products are wrong: refuse rather than mislead
        reason = triton_kron.apply_why_not(*(t.bfloat16() for t in (x, p1, p2)), True)
        assert reason and "bfloat16" in reason
    step = _step_inputs(1, 1, 3, 4)
    assert triton_kron.step_why_not(*step) is None
    reason = triton_kron.step_why_not(*step[:-1], step[-1].half())
    assert reason and "float16" in reason  # η is float32 whatever the data dtype


def test_opcheck(backend):
    ns = torch.ops.interir
    x, p1, p2 = _apply_inputs(2, 2, 5, 4)
    g = torch.randn_like(x)
    torch.library.opcheck(getattr(ns, f"kron_apply_{backend}").default, (x.requires_grad_(), p1, p2, True))
    for transpose in (False, True):
        torch.library.opcheck(getattr(ns, f"kron_apply_backward_{backend}").default, (g, x.detach(), p1, p2, transpose))
    _, f, g1, g2, r, eta = _step_inputs(2, 2, 5, 4)
    args = (x.detach().requires_grad_(), f.requires_grad_(), g1, g2, r, eta.requires_grad_())
    torch.library.opcheck(getattr(ns, f"kron_step_{backend}").default, args)
    torch.library.opcheck(getattr(ns, f"kron_step_backward_{backend}").default,
                          (g, f.detach(), g1, g2, r, eta.detach()))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(2, 3, 17, 33), (1, 2, 64, 64), (1, 1, 130, 70)])
def test_half_precision(backend, dtype, shape):
    """bfloat16/float16 storage, float32 accumulation: on a GPU, or the CUDA kernels' host emulation."""
    skip_triton_half_on_cpu(backend)
    _check_apply(backend, shape, False, dtype)
    _check_apply(backend, shape, True, dtype)
    _check_step(backend, shape, dtype)
