"""InterIR network: structure against docs/model.md formulas, shapes, gradients, switches, compile, errors."""
import pytest
import torch
import torch.nn as nn

import interir
from interir.errors import InterIRError
from interir.model import DMUM, MUM, RESM, EPBlock, ExplainableConv, InterIRConfig, preset_config
from interir.model.blocks import frobenius_normalize
from tests.conftest import wake_up

F64 = torch.float64


# --------------------------------------------------------------------------------- parameter counts
def _epblock_params(c, explainable=True, depthwise=False):
    conv2 = (2 * c) * (1 if depthwise else 2 * c) * 9 + 2 * c + (1 if explainable else 0)
    return 2 * c + (2 * c * c + 2 * c) + conv2 + (c * c + c) + (c * c + c) + 2 * c + (2 * c * c + 2 * c) + (c * c + c) + 2 * c


def _convs_params(cin, cout, e):
    return cin * e * cout + e * cout + e * cout * cout + cout


def expected_parameters(cfg: InterIRConfig) -> int:
    """Parameter count written out from docs/model.md, module by module."""
    c, e = cfg.channels, cfg.expand
    ep = lambda ch: _epblock_params(ch, cfg.explainable, cfg.depthwise)  # noqa: E731
    resm = 5 * ep(c) + 2 * _convs_params(c, c, e) + (_convs_params(2 * c, c, e) if cfg.additive_resm else 0) + 1
    dmum = 2 * ep(2 * c) + (2 * _convs_params(2 * c, c, e) if cfg.weighted_dmum else 0)
    mum = 2 * ep(c) + _convs_params(c, c, e)
    rgb = cfg.in_channels * cfg.scale**2
    return rgb * c * 9 + (c * c + c) + cfg.num_blocks * (resm + dmum + mum) + resm + c * rgb * 9


@pytest.mark.parametrize("preset", ["paper", "small", "tiny"])
@pytest.mark.parametrize("switch", [None, "explainable", "additive_resm", "weighted_dmum", "depthwise"])
def test_parameter_count_matches_spec(preset, switch):
    overrides = {} if switch is None else {switch: switch == "depthwise"}
    cfg = preset_config(preset, **overrides)
    model = interir.model.InterIR(cfg)
    assert sum(p.numel() for p in model.parameters()) == expected_parameters(cfg)


def test_paper_preset_is_about_27m():
    n = sum(p.numel() for p in interir.build_model("paper").parameters())
    assert 26e6 < n < 30e6, n  # the paper: 27 M (ours: 29.04 M, docs/model.md)


# --------------------------------------------------------------------------------- module formulas
def _state(cfg, b=2, h=6, w=5, dtype=F64):
    c = cfg.channels
    x, m, dd = (torch.randn(b, c, h, w, dtype=dtype) for _ in range(3))
    p1 = frobenius_normalize(torch.randn(b, c, h, h, dtype=dtype))
    p2 = frobenius_normalize(torch.randn(b, c, w, w, dtype=dtype))
    return x, m, dd, p1, p2


@pytest.mark.parametrize("additive", [True, False])
def test_resm_follows_spec(additive):
    cfg = preset_config("tiny", additive_resm=additive)
    resm = wake_up(RESM(cfg)).double()
    x, m, dd, p1, p2 = _state(cfg)
    t = lambda a: a.transpose(-1, -2)  # noqa: E731
    u = resm.ep0(x) + m
    z, s = resm.convs_z(u), resm.convs_s(u)
    g = t(p1) @ p1 @ x @ p2 @ t(p2)
    bterm = t(p1) @ dd @ t(p2)
    prox = resm.ep2(resm.ep1(x) + m + z)
    f = g + resm.convs_w(torch.cat([g, bterm], 1)) * bterm + prox if additive else g - bterm + prox
    v = t(p1) @ p1 @ f @ p2 @ t(p2) + resm.ep4(resm.ep3(f) * (1 - s))
    torch.testing.assert_close(resm(x, m, dd, p1, p2), x - resm.eta * v)
    assert (resm.convs_w is not None) == additive


@pytest.mark.parametrize("weighted", [True, False])
def test_dmum_follows_spec(weighted):
    cfg = preset_config("tiny", weighted_dmum=weighted)
    dmum = wake_up(DMUM(cfg)).double()
    x, _, dd, _, p2 = _state(cfg)
    nf = lambda a: a / (torch.sqrt((a * a).sum((-1, -2), keepdim=True)) + 1e-6)  # noqa: E731
    xp2 = x @ p2
    gate1 = dmum.convs_w1(torch.cat([xp2, dd], 1)) * dd if weighted else dd
    a1, a2 = dmum.ep_p(torch.cat([xp2, gate1], 1)).chunk(2, 1)
    p1_new = nf(a1 @ a2.transpose(-1, -2))
    p1x = p1_new @ x
    gate2 = dmum.convs_w2(torch.cat([p1x, dd], 1)) * dd if weighted else dd
    b1, b2 = dmum.ep_q(torch.cat([p1x, gate2], 1)).chunk(2, 1)
    p2_new = nf(b1.transpose(-1, -2) @ b2)
    got1, got2 = dmum(x, dd, p2)
    torch.testing.assert_close(got1, p1_new)
    torch.testing.assert_close(got2, p2_new)
    assert got1.shape[-2:] == (6, 6) and got2.shape[-2:] == (5, 5)
    torch.testing.assert_close(torch.linalg.matrix_norm(got1), torch.ones(2, cfg.channels, dtype=F64), atol=1e-5, rtol=0)


def test_mum_follows_spec():
    cfg = preset_config("tiny")
    mum = wake_up(MUM(cfg)).double()
    x, m, *_ = _state(cfg)
    torch.testing.assert_close(mum(x, m), m + mum.ep_m(x) - mum.convs_z(mum.ep0(x) + m))


def test_network_init_and_output_follow_spec():
    model = wake_up(interir.build_model("tiny")).double()
    d = torch.rand(2, 3, 16, 20, dtype=F64)
    dd = model.down[1](nn.functional.pixel_unshuffle(d, 4))
    _, m, p1, p2 = model.embed(d)
    nf = lambda a: a / (torch.linalg.matrix_norm(a)[..., None, None] + 1e-6)  # noqa: E731
    torch.testing.assert_close(p1, nf(dd @ dd.transpose(-1, -2)))
    torch.testing.assert_close(p2, nf(dd.transpose(-1, -2) @ dd))
    torch.testing.assert_close(m, model.init_m(dd) + dd)
    x, mm, q1, q2 = model.blocks[0](dd, m, dd, p1, p2)
    x = model.final(x, mm, dd, q1, q2)
    torch.testing.assert_close(model(d), d + nn.functional.pixel_shuffle(model.up[0](x), 4))


def test_ablation_switches_change_the_network():
    full = interir.build_model("tiny")
    plain = interir.build_model("tiny", explainable=False)
    n_ep = sum(isinstance(mod, EPBlock) for mod in full.modules())
    assert n_ep == 9 * 1 + 5
    assert len(full.explainable_convs()) == n_ep and not plain.explainable_convs()
    assert sum(isinstance(mod, nn.Conv2d) and mod.kernel_size == (3, 3) for mod in plain.modules()) == n_ep + 2
    base = interir.build_model("tiny", explainable=False, additive_resm=False, weighted_dmum=False)
    assert all(b.resm.convs_w is None and b.dmum.convs_w1 is None for b in base.blocks)
    dw = interir.build_model("tiny", depthwise=True)
    assert all(mod.groups == mod.in_channels for _, mod in dw.explainable_convs())


# --------------------------------------------------------------------------------- shapes and gradients
@pytest.mark.parametrize("shape", [(1, 3, 37, 53), (3, 3, 37, 53), (2, 3, 16, 16), (1, 3, 5, 3), (1, 3, 1, 1)])
def test_any_size_and_batch(shape):
    model = wake_up(interir.build_model("tiny")).eval()
    d = torch.rand(shape)
    with torch.no_grad():
        out, stages = model(d, return_stages=True)
    assert out.shape == d.shape and out.dtype == d.dtype and torch.isfinite(out).all()
    assert len(stages) == model.cfg.num_blocks + 1 and all(s.shape == d.shape for s in stages)
    torch.testing.assert_close(stages[-1], out)
    # samples are independent: sample 0 restored alone gives the same result
    with torch.no_grad():
        torch.testing.assert_close(model(d[:1]), out[:1], rtol=1e-5, atol=1e-5)


def test_every_parameter_gets_a_gradient():
    model = wake_up(interir.build_model("tiny"))
    d = torch.rand(2, 3, 24, 28)
    loss = (model(d) - torch.rand_like(d)).abs().mean() + 0.1 * interir.ops.fft_l1_loss(model(d), d)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().sum() == 0]
    assert not missing, missing
    thetas = [n for n, _ in model.named_parameters() if n.endswith("theta")]
    assert len(thetas) == len(model.explainable_convs())


def test_whole_network_gradcheck_float64():
    """Every custom op's backward composed through the network (plain convs: the hard mask is not smooth)."""
    model = wake_up(interir.build_model("tiny", explainable=False, channels=4, expand=2)).double()
    d = torch.rand(1, 3, 8, 12, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: model(t), (d,), fast_mode=True)


def test_explanations_are_recorded():
    model = interir.build_model("tiny").eval()
    model.record_explanations()
    with torch.no_grad():
        model(torch.rand(2, 3, 20, 24))
    for _, conv in model.explainable_convs():
        assert conv.last_attention.shape == (2, conv.in_channels, 3, 3)
        assert conv.last_mask.shape[:2] == (2, 1) and 0 <= conv.last_mask.min() <= conv.last_mask.max() <= 1
    model.record_explanations(False)
    assert all(c.last_attention is None for _, c in model.explainable_convs())
    assert len(model.step_sizes()) == 2 and model.step_sizes()[0] == pytest.approx(0.01)


def test_bfloat16_autocast():
    model = wake_up(interir.build_model("tiny")).eval()
    d = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        exact = model(d)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(d)
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert (low - exact).abs().mean() < 0.02


def test_torch_compile_matches_eager():
    model = wake_up(interir.build_model("tiny")).eval()
    d = torch.rand(2, 3, 20, 28)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(d), model(d), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.rand(3, 16, 16), "4-D"),
        (torch.rand(1, 4, 16, 16), "3 channels"),
        (torch.randint(0, 255, (1, 3, 16, 16), dtype=torch.uint8), "floating-point"),
        (torch.full((1, 3, 8, 8), float("nan")), "NaN or Inf"),
        (torch.tensor([[[[float("inf")]]]]).expand(1, 3, 4, 4).contiguous(), "NaN or Inf"),
        (torch.rand(0, 3, 8, 8), "empty"),
        ([[1.0]], "torch.Tensor"),
    ],
)
def test_bad_input_gives_one_line_error(bad, message):
    model = interir.build_model("tiny")
    with pytest.raises(InterIRError, match=message) as info:
        model(bad)
    assert "\n" not in str(info.value)


def test_unknown_preset_and_option():
    with pytest.raises(InterIRError, match="unknown InterIR preset 'huge'"):
        interir.build_model("huge")
    with pytest.raises(InterIRError, match="unknown InterIR option"):
        interir.build_model("tiny", chanels=8)


def test_explainable_conv_module_rejects_even_kernels():
    with pytest.raises(ValueError, match="odd"):
        ExplainableConv(4, 4, 2)
    for k in (2.5, 3.0):
        with pytest.raises(ValueError, match="an odd integer"):
            ExplainableConv(4, 4, k)


@pytest.mark.parametrize("option, value, message", [
    ("channels", 0, "channels must be an integer ≥ 1"),
    ("channels", "abc", "channels must be an integer"),
    ("channels", 8.0, "channels must be an integer"),
    ("num_blocks", -1, "num_blocks must be an integer ≥ 0"),
    ("scale", 0, "scale must be an integer ≥ 1"),
    ("expand", 0, "expand must be an integer ≥ 1"),
    ("eta_init", float("nan"), "eta_init must be a finite number"),
    ("tau", 0.0, "tau must be a finite number > 0"),
    ("explainable", "yes", "explainable must be true or false"),
])
def test_model_options_are_checked(option, value, message):
    with pytest.raises(InterIRError, match=message):
        interir.build_model("tiny", **{option: value})


def test_another_float_dtype_is_computed_in_the_networks_own_and_returned_in_its_own():
    model = interir.build_model("tiny").eval()
    x = torch.rand(1, 3, 13, 18)
    with torch.no_grad():
        y32 = model(x)
        y64 = model(x.double())
        y64s, stages = model(x.double(), return_stages=True)
    assert y64.dtype == F64 and y64s.dtype == F64 and all(s.dtype == F64 for s in stages)
    torch.testing.assert_close(y64.float(), y32)
    with torch.no_grad():
        assert model.double()(x).dtype == torch.float32  # and a float64 network takes float32 images
