"""DGUNet baseline (docs/model.md): parameter counts of the authors' release, shapes, gradients, training, loss, errors.

Everything runs on the `dgunet-tiny` preset except the parameter and MAC counts of the official configurations,
which are computed on the meta device (no memory, no time).
"""
import math

import pytest
import torch
import torch.nn.functional as F

from interir.errors import InterIRError
from interir.model.dgunet import (
    DGUNET_PRESETS, DGUNet, DGUNetConfig, MergeBlock, build_dgunet, charbonnier_loss, dgunet_loss,
    dgunet_preset_config, edge_loss,
)
from interir.profile import count_macs_all, count_macs_hooks, count_parameters

F64 = torch.float64

# Parameter counts of the authors' DGUNet.py (MC-E/Deep-Generalized-Unfolding-Networks-for-Image-Restoration):
# Deblurring/DGUNet.py's defaults (n_feat 80, scale_unetfeats 48, scale_orsnetfeats 32; the denoising model
# is built the same way) and the Deraining DGUNet.py's (n_feat 40, 20, 16). Both have 7 stages, stages 2–6
# sharing one block (depth=5). Their DGUNet_plus.py (untied stages) has 57,888,595 and 12,176,107.
AUTHORS_PARAMETERS = {"dgunet": 17_331_512, "dgunet-derain": 3_661_912}


# --------------------------------------------------------------------------------- parameter counts
def _conv(cin, cout, k, bias):
    return cin * cout * k * k + (cout if bias else 0)


def _unet_block(cin, cout, down, csff, hin):
    p = _conv(cin, cout, 1, True) + _conv(cin, cout, 3, True) + _conv(cout, cout, 3, True)
    if down and csff:  # csff_enc, phi, gamma (cout → cout) and csff_dec (cin → cout)
        p += 3 * _conv(cout, cout, 3, True) + _conv(cin, cout, 3, True)
    if hin:
        p += 2 * (cout // 2)
    if down:
        p += _conv(cout, cout, 4, False)
    return p


def expected_parameters(cfg: DGUNetConfig) -> int:
    """Parameter count written out module by module from the authors' DGUNet.py."""
    c, n, k, b = cfg.in_c, cfg.n_feat, cfg.kernel_size, cfg.bias
    width = [n + cfg.scale_unetfeats * i for i in range(cfg.unet_depth)]
    levels = range(cfg.unet_depth - 1)

    def encoder(csff):
        return sum(_unet_block(width[i], width[i + 1], True, csff, True) for i in levels) + \
            _unet_block(width[-1], width[-1], False, csff, True)

    decoder = sum(_conv(width[i + 1], width[i], 2, True) + _unet_block(2 * width[i], width[i], False, False, False)
                  + _conv(width[i + 1], width[i], 3, True) for i in levels)
    resblock = _conv(c, cfg.resblock_feats, 3, True) + _conv(cfg.resblock_feats, c, 3, True)  # + one shared PReLU
    cab = 2 * _conv(n, n, k, b) + _conv(n, n // cfg.reduction, 1, b) + _conv(n // cfg.reduction, n, 1, b)
    shallow = _conv(c, n, k, b) + cab
    sam = _conv(n, n, 1, b) + _conv(n, c, 1, b)
    merge = _conv(2 * n, n, 3, True) + _conv(2 * n, cfg.subspace_dim, 3, True)
    stage1 = 2 * resblock + 1 + shallow + encoder(False) + decoder + sam
    concat12 = _conv(2 * n, n, k, b)
    middle = 2 * resblock + 1 + shallow + 1 + merge + encoder(True) + decoder + sam + concat12
    wide = n + cfg.scale_orsnetfeats
    last = 2 * resblock + 1 + shallow + _conv(2 * n, wide, k, b) + _conv(wide, c, k, b)
    return stage1 + middle + last + 1 + 1  # the PReLU shared by all Φ/Φᵀ nets, the one shared by CABs 1 and 7


@pytest.mark.parametrize("preset", sorted(AUTHORS_PARAMETERS))
def test_official_parameter_counts_match_the_authors(preset):
    with torch.device("meta"):
        model = build_dgunet(preset)
    assert count_parameters(model) == AUTHORS_PARAMETERS[preset] == expected_parameters(model.cfg)


@pytest.mark.parametrize("overrides", [{}, dict(bias=True, kernel_size=5), dict(unet_depth=3, depth=1, in_c=1, out_c=1),
                                       dict(resblock_feats=4, subspace_dim=2, scale_unetfeats=0, reduction=2)])
def test_parameter_count_formula(overrides):
    with torch.device("meta"):
        model = build_dgunet("dgunet-tiny", **overrides)
    assert count_parameters(model) == expected_parameters(model.cfg)


def test_official_configurations():
    for preset, (n, su, so) in {"dgunet": (80, 48, 32), "dgunet-derain": (40, 20, 16)}.items():
        cfg = dgunet_preset_config(preset)
        assert (cfg.n_feat, cfg.scale_unetfeats, cfg.scale_orsnetfeats) == (n, su, so)
        fixed = (cfg.num_stages, cfg.kernel_size, cfg.reduction, cfg.bias, cfg.unet_depth, cfg.multiple)
        assert fixed == (7, 3, 4, False, 4, 8)
        assert cfg.extra == {"preset": preset}
    assert set(DGUNET_PRESETS) == {"dgunet", "dgunet-derain", "dgunet-tiny"}
    assert DGUNet().cfg == dgunet_preset_config("dgunet")  # the defaults are the n_feat 80 model (extra not compared)


def test_authors_sharing_quirks_are_kept():
    """One PReLU for all Φ/Φᵀ nets, one for the CABs of stages 1 and 7, and the unused concat12 (see module doc)."""
    model = build_dgunet("dgunet-tiny")
    grad_acts = {id(m.body[1]) for m in (model.phi_0, model.phit_0, model.basic.phi_1, model.basic.phit_1,
                                          model.phi_6, model.phit_6)}
    assert len(grad_acts) == 1
    assert model.shallow_feat1[1].body[1] is model.shallow_feat7[1].body[1]
    assert model.basic.shallow_feat2[1].body[1] is not model.shallow_feat1[1].body[1]
    keys = model.state_dict().keys()
    assert {"basic.concat12.weight", "phi_6.body.1.weight", "basic.stage2_encoder.body.0.csff_dec.weight",
            "stage1_decoder.skip_conv.2.weight", "basic.merge12.subnet.bias", "r0", "basic.r1"} <= set(keys)


# --------------------------------------------------------------------------------- shapes and gradients
@pytest.mark.parametrize("shape", [(1, 3, 37, 53), (3, 3, 37, 53), (2, 3, 16, 16), (1, 3, 5, 3), (1, 3, 1, 1)])
def test_any_size_and_batch(shape):
    model = build_dgunet("dgunet-tiny").eval()
    x = torch.rand(shape)
    with torch.no_grad():
        out, stages = model(x, return_stages=True)
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
    assert len(stages) == model.cfg.num_stages == 4 and all(s.shape == x.shape for s in stages)
    assert stages[-1] is out
    with torch.no_grad():  # samples are independent
        torch.testing.assert_close(model(x[:1]), out[:1], rtol=1e-5, atol=1e-5)


def test_padding():
    model = build_dgunet("dgunet-tiny")
    assert model.padded_size(37, 53) == (40, 56) and model.padded_size(1, 17) == (16, 24)
    assert model.padded_size(16, 64) == (16, 64)


def test_every_parameter_gets_a_gradient():
    model = build_dgunet("dgunet-tiny")
    x, target = torch.rand(2, 3, 24, 28), torch.rand(2, 3, 24, 28)
    _, stages = model(x, return_stages=True)
    dgunet_loss(stages, target).backward()
    # basic.concat12 is built by the authors' DGUNet but never used in its forward: no gradient, by design.
    unused = {"basic.concat12.weight"}
    missing = [name for name, p in model.named_parameters() if name not in unused and
               (p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0)]
    assert not missing, missing
    assert model.basic.concat12.weight.grad is None


def test_training_a_few_steps_lowers_the_loss():
    model = build_dgunet("dgunet-tiny")
    clean = torch.rand(2, 3, 16, 16)
    noisy = (clean + 0.1 * torch.randn_like(clean)).clamp(0, 1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(8):
        opt.zero_grad(set_to_none=True)
        loss = dgunet_loss(model(noisy, return_stages=True)[1], clean)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert min(losses[-3:]) < 0.85 * losses[0], losses  # typically 0.35–0.75 after 8 steps


def test_whole_network_gradcheck_float64():
    small = dict(n_feat=4, scale_unetfeats=2, scale_orsnetfeats=2, depth=1, unet_depth=2)
    model = build_dgunet("dgunet-tiny", **small).double()
    x = torch.rand(1, 3, 5, 6, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: model(t), (x,), fast_mode=True)


def test_flat_images_stay_finite():
    model = build_dgunet("dgunet-tiny").eval()
    with torch.no_grad():
        for x in (torch.zeros(1, 3, 40, 40), torch.full((2, 3, 9, 9), 0.5), torch.ones(1, 3, 1, 1)):
            assert torch.isfinite(model(x)).all()


def test_bfloat16_autocast():
    model = build_dgunet("dgunet-tiny")
    x = torch.rand(1, 3, 20, 24)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    with torch.no_grad():
        assert (out.float() - model(x)).abs().max() < 0.1


# --------------------------------------------------------------------------------- merge block projection
def test_merge_projection_is_the_orthogonal_projection_onto_the_basis():
    merge = MergeBlock(6, subspace_dim=4, ridge=0.0)
    basis, bridge = torch.randn(2, 4, 5, 7, dtype=F64), torch.randn(2, 6, 5, 7, dtype=F64)
    projected = merge.project(basis, bridge)
    v = basis.flatten(2).transpose(1, 2)  # B×HW×k
    expected = (v @ torch.linalg.pinv(v) @ bridge.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(bridge.shape)
    torch.testing.assert_close(projected, expected)
    torch.testing.assert_close(merge.project(basis, projected), projected)  # idempotent
    # a rank-deficient basis (two equal maps) is singular without the ridge, finite with it
    singular = torch.cat([basis[:, :3], basis[:, :1]], 1).float()
    assert torch.isfinite(MergeBlock(6, 4, ridge=1e-6).project(singular, bridge.float())).all()


# --------------------------------------------------------------------------------- loss
def _reference_laplacian(x):
    """The authors' EdgeLoss.laplacian_kernel, written out (zero-filled upsampling by strided assignment)."""
    k = torch.tensor([[0.05, 0.25, 0.4, 0.25, 0.05]], dtype=x.dtype)
    kernel = (k.t() @ k).unsqueeze(0).repeat(x.shape[1], 1, 1, 1)
    gauss = lambda t: F.conv2d(F.pad(t, (2, 2, 2, 2), mode="replicate"), kernel, groups=t.shape[1])  # noqa: E731
    filtered = gauss(x)
    up = torch.zeros_like(filtered)
    up[:, :, ::2, ::2] = filtered[:, :, ::2, ::2] * 4
    return x - gauss(up)


def test_loss_matches_the_authors_formula():
    target = torch.rand(2, 3, 13, 10, dtype=F64)
    stages = [target + 0.1 * torch.randn_like(target) for _ in range(3)]
    char = lambda a, b: torch.sqrt((a - b) ** 2 + 1e-6).mean()  # noqa: E731
    expected = sum(char(s, target) for s in stages) + 0.05 * sum(
        char(_reference_laplacian(s), _reference_laplacian(target)) for s in stages)
    torch.testing.assert_close(dgunet_loss(stages, target), expected)
    torch.testing.assert_close(charbonnier_loss(stages[0], target), char(stages[0], target))
    lap_s, lap_t = _reference_laplacian(stages[0]), _reference_laplacian(target)
    torch.testing.assert_close(edge_loss(stages[0], target), char(lap_s, lap_t))
    # perfect stages cost exactly eps per term
    torch.testing.assert_close(dgunet_loss([target] * 7, target), torch.tensor(7 * 1.05e-3, dtype=F64))
    torch.testing.assert_close(dgunet_loss(stages, target, edge_weight=0), sum(char(s, target) for s in stages))


def test_loss_rejects_mismatched_shapes():
    with pytest.raises(InterIRError, match="differs from target"):
        dgunet_loss([torch.rand(1, 3, 8, 8)], torch.rand(1, 3, 8, 9))
    with pytest.raises(InterIRError, match="at least one"):
        dgunet_loss([], torch.rand(1, 3, 8, 8))


# --------------------------------------------------------------------------------- MACs (meta device)
def test_mac_counts_run_on_the_meta_device():
    """macs_all − macs_hooks is exactly what the hooks cannot see: the transposed convs and MergeBlock's products."""
    model = build_dgunet("dgunet-tiny")
    cfg, size = model.cfg, 64
    hooks, total = count_macs_hooks(model, (1, 3, size, size)), count_macs_all(model, (1, 3, size, size))
    width = [cfg.n_feat + cfg.scale_unetfeats * i for i in range(cfg.unet_depth)]
    up = sum(width[i + 1] * width[i] * 4 * (size >> (i + 1)) ** 2 for i in range(cfg.unet_depth - 1))  # per decoder
    hw, k = size * size, cfg.subspace_dim
    merge = 2 * k * k * hw + 2 * k * hw * cfg.n_feat  # VᵀV, (VᵀV)⁻¹Vᵀ, its product with the bridge, V·(…)
    assert total - hooks == (cfg.depth + 1) * up + cfg.depth * merge
    assert hooks > 0


def test_official_mac_counts_at_256():
    with torch.device("meta"):
        model = build_dgunet("dgunet-derain")
    assert 185e9 < count_macs_all(model) < 200e9 and 185e9 < count_macs_hooks(model) < 200e9


# --------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad, message", [
    ([[0.0]], "expects a torch.Tensor"),
    (torch.rand(3, 8, 8), "4-D"),
    (torch.rand(1, 1, 8, 8), "expects 3 channels"),
    (torch.randint(0, 255, (1, 3, 8, 8), dtype=torch.uint8), "floating-point"),
    (torch.rand(0, 3, 8, 8), "empty"),
    (torch.full((1, 3, 8, 8), float("nan")), "NaN or Inf"),
])
def test_bad_input_gives_one_line_error(bad, message):
    model = build_dgunet("dgunet-tiny")
    with pytest.raises(InterIRError, match=message) as info:
        model(bad)
    assert "\n" not in str(info.value)


def test_unknown_preset_option_and_bad_config():
    with pytest.raises(InterIRError, match="unknown DGUNet preset 'huge'"):
        build_dgunet("huge")
    with pytest.raises(InterIRError, match="unknown DGUNet option"):
        build_dgunet("dgunet-tiny", channels=3)
    with pytest.raises(InterIRError, match="out_c"):
        DGUNet(out_c=1)
    with pytest.raises(InterIRError, match="kernel_size must be odd"):
        DGUNetConfig(kernel_size=4)
