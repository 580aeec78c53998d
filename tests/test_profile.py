"""MAC counting (SPEC §7): both counts against closed-form totals."""
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
