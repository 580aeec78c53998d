"""MAC counting (docs/model.md, "Efficiency figures"): both counts against closed-form totals, and the flop
formula every custom op carries for torch.utils.flop_counter."""
import functools

import interir
from interir.model import EPBlock
from interir.profile import count_macs_all, count_macs_hooks


def _explainable_conv_macs(model, h, w):
    """MACs of every EPBlock's 3×3 conv at the internal resolution h×w: (2c)²·9·h·w each (full conv)."""
    return sum((2 * m.conv1.in_channels) ** 2 * 9 * h * w for m in model.modules() if isinstance(m, EPBlock))


def test_hook_count_misses_exactly_the_explainable_convs():
    size = 64
    full = interir.build_model("tiny")
    plain = interir.build_model("tiny", explainable=False)
    h = w = size // 4
    diff = count_macs_hooks(plain, (1, 3, size, size)) - count_macs_hooks(full, (1, 3, size, size))
    assert diff == _explainable_conv_macs(full, h, w)


def test_all_count_adds_modulated_convs_and_matrix_products():
    size = 64
    model = interir.build_model("tiny")
    c, n = model.cfg.channels, model.cfg.num_blocks
    h = w = size // 4
    kron = 2 * c * (h * w * w + h * h * w)  # one P1·X·P2
    # per RESM: Gram matrices (2 products), PᵀP(X), Pᵀ(Dd), the step's PᵀP(F); per DMUM: X·P2, A1·A2ᵀ,
    # P1·X, B1ᵀ·B2; at init: Dd·Ddᵀ and Ddᵀ·Dd
    gram = c * (h * h * h + w * w * w)
    one_sided = c * h * w * w
    resm = gram + 3 * kron // 2
    dmum = 4 * one_sided
    init = 2 * one_sided
    matrix = (n + 1) * resm + n * dmum + init
    expected = count_macs_hooks(model, (1, 3, size, size)) + _explainable_conv_macs(model, h, w) + matrix
    assert count_macs_all(model, (1, 3, size, size)) == expected


def test_paper_counts_at_256():
    model = interir.build_model("paper")
    hooks, total = count_macs_hooks(model), count_macs_all(model)
    assert 30e9 < hooks < 35e9 and 115e9 < total < 122e9, (hooks, total)


def _flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_every_op_carries_the_flops_of_its_definition(any_backend):
    """FlopCounterMode counts each custom op (and its backward) as it counts the plain-PyTorch reference
    definition, on every backend; the modulated conv's backward is two convolutions of the forward's size
    (FlopCounterMode's own formula would count the grouped reference's weight gradient as an ungrouped one)."""
    import torch

    from interir.ops import reference as R
    from tests.conftest import KERNEL_DEVICE

    ns, b = torch.ops.interir, any_backend
    rand = functools.partial(torch.rand, device=KERNEL_DEVICE)
    x, w, bias = rand(2, 6, 9, 11), rand(5, 6, 3, 3), rand(5)
    a, gy, theta = rand(2, 6, 3, 3), rand(2, 5, 9, 11), torch.tensor(0.1, device=KERNEL_DEVICE)
    attn = R.explainable_attention(x, theta, 3)
    p1, p2, eta = rand(2, 6, 9, 9), rand(2, 6, 11, 11), torch.tensor(0.1, device=KERNEL_DEVICE)
    pairs = [
        (lambda: getattr(ns, f"modulated_conv_{b}")(x, w, bias, a, 1), lambda: R.modulated_conv(x, w, bias, a)),
        (lambda: getattr(ns, f"explainable_attention_{b}")(x, theta, 3, 0.5),
         lambda: R.explainable_attention(x, theta, 3)),
        (lambda: getattr(ns, f"explainable_attention_backward_{b}")(torch.rand_like(attn), x, theta, attn, 0.5),
         lambda: R.explainable_attention_backward(torch.rand_like(attn), x, theta, attn)),
        (lambda: getattr(ns, f"kron_apply_{b}")(x, p1, p2, True), lambda: R.kron_apply(x, p1, p2, True)),
        (lambda: getattr(ns, f"kron_apply_backward_{b}")(x, x, p1, p2, False),
         lambda: R.kron_apply_backward(x, x, p1, p2)),
        (lambda: getattr(ns, f"kron_step_{b}")(x, x, p1, p2, x, eta), lambda: R.kron_step(x, x, p1, p2, x, eta)),
        (lambda: getattr(ns, f"kron_step_backward_{b}")(x, x, p1, p2, x, eta),
         lambda: R.kron_step_backward(x, x, p1, p2, x, eta)),
        (lambda: getattr(ns, f"fft_l1_loss_{b}")(x, x.flip(-1), True), lambda: R.fft_l1_loss(x, x.flip(-1))),
    ]
    for i, (op, definition) in enumerate(pairs):
        assert _flops(op) == _flops(definition), i
    conv = _flops(lambda: R.modulated_conv(x, w, bias, a))
    assert conv == 2 * 2 * 5 * 9 * 11 * 6 * 9 > 0
    assert _flops(lambda: getattr(ns, f"modulated_conv_backward_{b}")(gy, x, w, a, 1)) == 2 * conv


def test_flop_counter_mode_sees_the_true_count_of_the_model():
    """A user's own FlopCounterMode (no interir helper, real tensors) counts every product of the model:
    the closed-form total of test_all_count_adds_modulated_convs_and_matrix_products, which `interir info`
    reports."""
    import torch

    model = interir.build_model("tiny").eval()
    with torch.no_grad():
        flops = _flops(lambda: model(torch.rand(1, 3, 64, 64)))
    assert flops // 2 == count_macs_all(model, (1, 3, 64, 64)) > count_macs_hooks(model, (1, 3, 64, 64))
