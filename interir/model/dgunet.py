"""DGUNet baseline (docs/model.md): Mou, Wang, Zhang, "Deep Generalized Unfolding Networks for Image Restoration",
CVPR 2022 — proximal gradient descent unfolded into 7 stages.

Stage k restores the image estimate z (B×C×H×W) from the degraded observation y in two steps:

- gradient step (GDM):  x_k = z − r_k · Φᵀ_k(Φ_k(z) − y), where Φ_k and Φᵀ_k, the degradation operator and
  its transpose, are estimated by small residual conv nets (`ResBlock`) and r_k is a learned step size;
- proximal step (PMM):   a U-Net (shallow features → encoder → decoder → SAM) maps x_k to the next estimate.

Inter-stage information pathways carry, from one stage to the next, the encoder features and decoder outputs
of every scale (merged into the next encoder by `UNetConvBlock`'s cross-stage fusion) and the supervised-
attention (SAM) features (merged with the next stage's shallow features by `MergeBlock`, a learned subspace
projection). Stage 1 and stage 7 have their own modules; stages 2–6 apply one shared `DGUNetStage` `depth`
times (the authors' weight-sharing DGUNet; DGUNet+ unties them). Stage 7 ends with a conv tail: the output
is y + tail(concat(shallow features, SAM features)).

Structure, module names and parameter counts follow the authors' release, file DGUNet.py
(github.com/MC-E/Deep-Generalized-Unfolding-Networks-for-Image-Restoration): preset `dgunet`
(n_feat 80, scale_unetfeats 48, scale_orsnetfeats 32 — Deblurring/DGUNet.py) has 17,331,512 parameters,
preset `dgunet-derain` (n_feat 40, 20, 16 — the Deraining DGUNet.py) 3,661,912. The state-dict keys are
those of the authors' model (their DataParallel checkpoints need the "module." prefix removed), including
their two weight-sharing quirks, kept so that the counts match: one PReLU is shared by all Φ/Φᵀ nets, and
one by the CABs of stages 1 and 7. `basic.concat12` exists in their model but is never used in forward, so
it never receives a gradient; it is kept for the parameter count and checkpoint compatibility.

Changes from the authors' code (numerics only, see `MergeBlock`): the subspace projection is computed in
float32 at least with autocast off, and its 16×16 Gram matrix gets a tiny relative ridge (`merge_ridge`,
1e-6 of its mean diagonal) so that a rank-deficient basis cannot make the inverse fail or blow up; it moves
outputs by about 1e-5, the size of float32 round-off. merge_ridge=0 gives their arithmetic exactly.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from interir.errors import InterIRError
from interir.model.inputs import check_image_batch, in_network_dtype, pad_bottom_right
from interir.model.protocol import RestorationModel
from interir.model.registry import config_from_preset, model_entry, register_model
from interir.validation import expect_bool, expect_float, expect_int, expect_mapping


@dataclass(frozen=True)
class DGUNetConfig:
    """Every switch of DGUNet; the first nine are the authors' constructor arguments (same names)."""

    in_c: int = 3  # image channels in (the network is residual: out_c must equal in_c)
    out_c: int = 3
    n_feat: int = 80  # U-Net width at full resolution
    scale_unetfeats: int = 48  # channels added per U-Net level
    scale_orsnetfeats: int = 32  # extra channels of stage 7's concat conv
    num_cab: int = 8  # an argument of the authors' constructor that their DGUNet does not use (kept for fidelity)
    kernel_size: int = 3  # shallow-feature, CAB and stage-7 convs
    reduction: int = 4  # channel-attention reduction in the CABs
    bias: bool = False  # bias of those convs and of the SAMs
    depth: int = 5  # applications of the shared middle stage: num_stages = depth + 2
    unet_depth: int = 4  # encoder levels (unet_depth − 1 downsamplings); the authors fix it at 4
    subspace_dim: int = 16  # basis size of MergeBlock's projection
    resblock_feats: int = 64  # hidden width of the Φ/Φᵀ ResBlocks
    relu_slope: float = 0.2  # LeakyReLU slope in the U-Net blocks
    merge_ridge: float = 1e-6  # relative ridge of MergeBlock's Gram matrix (0: the authors' exact arithmetic)
    extra: dict = field(default_factory=dict, compare=False)  # free-form metadata (preset name, …)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int):
                expect_int(f"DGUNet option {f.name}", value)
            elif f.type in ("bool", bool):
                expect_bool(f"DGUNet option {f.name}", value)
            elif f.type in ("float", float):
                object.__setattr__(self, f.name, expect_float(f"DGUNet option {f.name}", value))
        expect_mapping("DGUNet option extra", self.extra)
        positive = ("in_c", "out_c", "n_feat", "kernel_size", "reduction", "unet_depth", "subspace_dim",
                    "resblock_feats")
        bad = [name for name in positive if getattr(self, name) < 1]
        bad += [name for name in ("scale_unetfeats", "scale_orsnetfeats", "depth") if getattr(self, name) < 0]
        if bad:
            raise InterIRError(f"DGUNetConfig: {', '.join(bad)} out of range ({self.to_dict()})")
        if self.out_c != self.in_c:
            raise InterIRError(f"DGUNetConfig: out_c ({self.out_c}) must equal in_c ({self.in_c}): stages are residual")
        if self.n_feat < self.reduction:
            raise InterIRError(f"DGUNetConfig: n_feat ({self.n_feat}) must be at least reduction ({self.reduction})")
        if self.kernel_size % 2 != 1:
            raise InterIRError(f"DGUNetConfig: kernel_size must be odd, got {self.kernel_size}")
        if self.merge_ridge < 0:
            raise InterIRError(f"DGUNetConfig: merge_ridge must be ≥ 0, got {self.merge_ridge}")

    @property
    def num_stages(self) -> int:
        return self.depth + 2

    @property
    def multiple(self) -> int:
        """Side multiple the encoder–decoder needs (one halving per level below the first)."""
        return 2 ** (self.unet_depth - 1)

    def to_dict(self) -> dict:
        return asdict(self)


DGUNET_PRESETS: dict[str, dict] = {
    "dgunet": dict(n_feat=80, scale_unetfeats=48, scale_orsnetfeats=32),  # denoising / deblurring, 17,331,512 params
    "dgunet-derain": dict(n_feat=40, scale_unetfeats=20, scale_orsnetfeats=16),  # deraining, 3,661,912 params
    # tests: 4 stages. reduction 1 keeps 16 hidden units in every channel attention (whose 1×1 convs have no
    # bias): with 2 (n_feat 8, reduction 4) all of them are often dead at init, and those convs get no gradient.
    "dgunet-tiny": dict(n_feat=16, scale_unetfeats=8, scale_orsnetfeats=8, reduction=1, depth=2, subspace_dim=4,
                        resblock_feats=8),
}


def dgunet_preset_config(name: str, **overrides) -> DGUNetConfig:
    """The DGUNetConfig of preset `name`, with keyword overrides (any DGUNetConfig field)."""
    return config_from_preset(model_entry("dgunet"), name, overrides)


def build_dgunet(preset: str = "dgunet", **overrides) -> "DGUNet":
    """DGUNet of preset `preset` (`dgunet`, `dgunet-derain`, `dgunet-tiny`) with keyword overrides."""
    return DGUNet(dgunet_preset_config(preset, **overrides))


# ------------------------------------------------------------------------------------------ building blocks
def _conv(cin: int, cout: int, k: int, bias: bool = False, stride: int = 1) -> nn.Conv2d:
    """k×k conv with 'same' padding (for odd k)."""
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=bias)


def _float32_region(device_type: str):
    """Autocast off (where autocast exists), so that explicitly promoted float32 math stays float32."""
    if device_type in ("cpu", "cuda", "xpu", "mps"):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


class ResBlock(nn.Module):
    """Φ or Φᵀ of the gradient step, B×c×H×W → same: x + Conv3×3(hidden→c)(act(Conv3×3(c→hidden)(x))).

    `act` is passed in because the authors share a single PReLU among all these nets.
    """

    def __init__(self, channels: int, hidden: int, act: nn.Module):
        super().__init__()
        self.body = nn.Sequential(_conv(channels, hidden, 3, bias=True), act, _conv(hidden, channels, 3, bias=True))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class CALayer(nn.Module):
    """Channel attention: x · sigmoid(1×1 conv(c → c/r) → ReLU → 1×1 conv(c/r → c) of the global mean)."""

    def __init__(self, channels: int, reduction: int, bias: bool):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, bias=bias), nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1, bias=bias), nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv_du(self.avg_pool(x))


class CAB(nn.Module):
    """Channel-attention block: x + CA(conv(act(conv(x)))). B×c×H×W → same; `act` is shared by the caller."""

    def __init__(self, channels: int, kernel_size: int, reduction: int, bias: bool, act: nn.Module):
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels, kernel_size, bias), act,
                                  _conv(channels, channels, kernel_size, bias))
        self.CA = CALayer(channels, reduction, bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.CA(self.body(x))


def shallow_features(cfg: DGUNetConfig, act: nn.Module) -> nn.Sequential:
    """Image B×in_c×H×W → features B×n_feat×H×W: a conv, then a CAB."""
    return nn.Sequential(_conv(cfg.in_c, cfg.n_feat, cfg.kernel_size, cfg.bias),
                         CAB(cfg.n_feat, cfg.kernel_size, cfg.reduction, cfg.bias, act))


class SAM(nn.Module):
    """Supervised attention between stages (1×1 convs, as the authors use it).

    forward(feat B×n×H×W, x_img B×C×H×W) → (feat + conv1(feat) for the next stage, the stage image
    x_img + conv2(feat)).
    """

    def __init__(self, n_feat: int, out_c: int, bias: bool):
        super().__init__()
        self.conv1 = _conv(n_feat, n_feat, 1, bias)
        self.conv2 = _conv(n_feat, out_c, 1, bias)

    def forward(self, feat: Tensor, x_img: Tensor) -> tuple[Tensor, Tensor]:
        return feat + self.conv1(feat), x_img + self.conv2(feat)


class MergeBlock(nn.Module):
    """Merges the previous stage's SAM features into this stage's shallow features by subspace projection.

    forward(x B×n×H×W, bridge B×n×H×W) → x + conv_block(concat(x, P·bridge)), where P projects every channel
    of `bridge` (a vector over the H·W pixels) onto the span of k = subspace_dim basis maps predicted from
    concat(x, bridge) by `subnet` and L1-normalised per map: P = V(VᵀV + δI)⁻¹Vᵀ. δ = merge_ridge × the mean
    diagonal of VᵀV (our addition; the authors use δ = 0, which fails for a rank-deficient basis). The projection
    runs in float32 at least, outside autocast; the product order is the authors' (same MAC count).
    """

    def __init__(self, n_feat: int, subspace_dim: int = 16, ridge: float = 0.0):
        super().__init__()
        self.conv_block = _conv(2 * n_feat, n_feat, 3, bias=True)
        self.subnet = _conv(2 * n_feat, subspace_dim, 3, bias=True)
        self.subspace_dim = subspace_dim
        self.ridge = ridge

    def project(self, basis: Tensor, bridge: Tensor) -> Tensor:
        """basis B×k×H×W, bridge B×c×H×W → the projection of bridge's channels onto span(basis), B×c×H×W."""
        b, c, h, w = bridge.shape
        acc = torch.promote_types(bridge.dtype, torch.float32)
        with _float32_region(bridge.device.type):
            v_t = basis.to(acc).reshape(b, self.subspace_dim, h * w)  # B×k×HW
            v_t = v_t / (1e-6 + v_t.abs().sum(dim=2, keepdim=True))
            v = v_t.transpose(1, 2)  # B×HW×k
            gram = v_t @ v  # B×k×k
            if self.ridge > 0:
                eye = torch.eye(self.subspace_dim, dtype=acc, device=gram.device)
                scale = gram.diagonal(dim1=-2, dim2=-1).mean(-1)[:, None, None]
                gram = gram + (self.ridge * scale + torch.finfo(acc).tiny) * eye
            coeffs = (torch.linalg.inv(gram) @ v_t) @ bridge.to(acc).reshape(b, c, h * w).transpose(1, 2)  # B×k×c
            out = (v @ coeffs).transpose(1, 2).reshape(b, c, h, w)
        return out.to(bridge.dtype)

    def forward(self, x: Tensor, bridge: Tensor) -> Tensor:
        basis = self.subnet(torch.cat([x, bridge], 1))
        return x + self.conv_block(torch.cat([x, self.project(basis, bridge)], 1))


class UNetConvBlock(nn.Module):
    """One U-Net level: two 3×3 convs + LeakyReLU with a 1×1 identity path; optionally half-instance
    normalisation (HIN: the first half of the channels of the first conv's output), cross-stage feature
    fusion (CSFF) with the previous stage's encoder/decoder maps, and a 4×4 stride-2 downsampling conv.

    forward(x B×cin×H×W, enc B×cout×H×W | None, dec B×cin×H×W | None) → out B×cout×H×W, or, with
    downsampling, (B×cout×H/2×W/2, out) — the second being the skip connection.
    """

    def __init__(self, cin: int, cout: int, downsample: bool, relu_slope: float, use_csff: bool = False,
                 use_hin: bool = False):
        super().__init__()
        self.identity = nn.Conv2d(cin, cout, 1)
        self.conv_1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv_2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.relu_slope = relu_slope
        self.use_csff = downsample and use_csff
        if self.use_csff:
            self.csff_enc = nn.Conv2d(cout, cout, 3, padding=1)
            self.csff_dec = nn.Conv2d(cin, cout, 3, padding=1)
            self.phi = nn.Conv2d(cout, cout, 3, padding=1)
            self.gamma = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm = nn.InstanceNorm2d(cout // 2, affine=True) if use_hin else None
        self.downsample = nn.Conv2d(cout, cout, 4, stride=2, padding=1, bias=False) if downsample else None

    def forward(self, x: Tensor, enc: Tensor | None = None, dec: Tensor | None = None):
        out = self.conv_1(x)
        if self.norm is not None:
            half, rest = out.split([self.norm.num_features, out.shape[1] - self.norm.num_features], dim=1)
            out = torch.cat([self.norm(half), rest], dim=1)
        out = F.leaky_relu(out, self.relu_slope)
        out = F.leaky_relu(self.conv_2(out), self.relu_slope) + self.identity(x)
        if enc is not None and dec is not None:
            if not self.use_csff:
                raise RuntimeError("UNetConvBlock: cross-stage features given to a block built without CSFF")
            skip = F.leaky_relu(self.csff_enc(enc) + self.csff_dec(dec), 0.1)
            out = out * torch.sigmoid(self.phi(skip)) + self.gamma(skip) + out
        if self.downsample is None:
            return out
        return self.downsample(out), out


class Encoder(nn.Module):
    """U-Net encoder, level i at 1/2^i resolution with n_feat + i·scale_unetfeats channels (HIN everywhere).

    forward(x B×n_feat×H×W, enc_prev, dec_prev) → (skips: the unet_depth − 1 pre-downsampling maps, fine to
    coarse; bottom B×(n_feat + (unet_depth−1)·s)×H/m×W/m). With the previous stage's skips `enc_prev` and
    decoder outputs `dec_prev` (coarse to fine), every downsampling level fuses them in (CSFF).
    """

    def __init__(self, n_feat: int, scale: int, levels: int, relu_slope: float, csff: bool):
        super().__init__()
        width = [n_feat + scale * i for i in range(levels)]
        self.body = nn.ModuleList(UNetConvBlock(width[i], width[i + 1], True, relu_slope, use_csff=csff, use_hin=True)
                                  for i in range(levels - 1))
        self.body.append(UNetConvBlock(width[-1], width[-1], False, relu_slope, use_csff=csff, use_hin=True))

    def forward(self, x: Tensor, enc_prev: Sequence[Tensor] | None = None, dec_prev: Sequence[Tensor] | None = None):
        skips = []
        for i, block in enumerate(self.body[:-1]):
            if enc_prev is not None and dec_prev is not None:
                x, skip = block(x, enc_prev[i], dec_prev[-i - 1])
            else:
                x, skip = block(x)
            skips.append(skip)
        return skips, self.body[-1](x)


class UNetUpBlock(nn.Module):
    """2×2 stride-2 transposed conv (cin → cout), concatenated with the skip (cout), then a UNetConvBlock."""

    def __init__(self, cin: int, cout: int, relu_slope: float):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.conv_block = UNetConvBlock(2 * cout, cout, False, relu_slope)

    def forward(self, x: Tensor, bridge: Tensor) -> Tensor:
        return self.conv_block(torch.cat([self.up(x), bridge], 1))


class Decoder(nn.Module):
    """U-Net decoder: forward(bottom, skips) → the outputs of every level, coarse to fine (the last is
    B×n_feat×H×W). Each skip goes through a 3×3 conv (its width → the level's width) before the concat."""

    def __init__(self, n_feat: int, scale: int, levels: int, relu_slope: float):
        super().__init__()
        width = [n_feat + scale * i for i in range(levels)]
        self.body = nn.ModuleList(UNetUpBlock(width[i], width[i - 1], relu_slope) for i in range(levels - 1, 0, -1))
        self.skip_conv = nn.ModuleList(nn.Conv2d(width[i], width[i - 1], 3, padding=1)
                                       for i in range(levels - 1, 0, -1))

    def forward(self, x: Tensor, skips: Sequence[Tensor]) -> list[Tensor]:
        outs = []
        for i, (up, skip_conv) in enumerate(zip(self.body, self.skip_conv)):
            x = up(x, skip_conv(skips[-i - 1]))
            outs.append(x)
        return outs


def gradient_step(z: Tensor, y: Tensor, phi: nn.Module, phit: nn.Module, r: Tensor) -> Tensor:
    """GDM: z − r·Φᵀ(Φ(z) − y), the gradient step on ½‖Φz − y‖² with learned Φ, Φᵀ and step r."""
    return z - r.to(z.dtype) * phit(phi(z) - y)


class DGUNetStage(nn.Module):
    """One middle stage (the authors' `Basic_block`, shared by stages 2–6).

    forward(y, z, enc_prev, dec_prev, sam_prev) → (sam features, stage image, encoder skips, decoder outputs):
    gradient step on z, shallow features merged with the previous SAM features, CSFF encoder–decoder, SAM.
    """

    def __init__(self, cfg: DGUNetConfig, grad_act: nn.Module):
        super().__init__()
        act = nn.PReLU()  # this stage's CAB activation
        self.phi_1 = ResBlock(cfg.in_c, cfg.resblock_feats, grad_act)
        self.phit_1 = ResBlock(cfg.in_c, cfg.resblock_feats, grad_act)
        self.r1 = nn.Parameter(torch.tensor([0.5]))
        self.shallow_feat2 = shallow_features(cfg, act)
        self.merge12 = MergeBlock(cfg.n_feat, cfg.subspace_dim, cfg.merge_ridge)
        self.stage2_encoder = Encoder(cfg.n_feat, cfg.scale_unetfeats, cfg.unet_depth, cfg.relu_slope, csff=True)
        self.stage2_decoder = Decoder(cfg.n_feat, cfg.scale_unetfeats, cfg.unet_depth, cfg.relu_slope)
        self.sam23 = SAM(cfg.n_feat, cfg.out_c, cfg.bias)
        # Present in the authors' model but never used in its forward (no gradient): kept for the parameter
        # count and so that their checkpoints load.
        self.concat12 = _conv(2 * cfg.n_feat, cfg.n_feat, cfg.kernel_size, cfg.bias)

    def forward(self, y: Tensor, z: Tensor, enc_prev: list[Tensor], dec_prev: list[Tensor], sam_prev: Tensor):
        x_img = gradient_step(z, y, self.phi_1, self.phit_1, self.r1)
        feat = self.merge12(self.shallow_feat2(x_img), sam_prev)
        skips, bottom = self.stage2_encoder(feat, enc_prev, dec_prev)
        outs = self.stage2_decoder(bottom, skips)
        sam_feat, img = self.sam23(outs[-1], x_img)
        return sam_feat, img, skips, outs


@register_model("dgunet", config=DGUNetConfig, presets=DGUNET_PRESETS, default_preset="dgunet",
                smallest_preset="dgunet-tiny", loss="dgunet", uses_ops=False)
class DGUNet(RestorationModel):
    """DGUNet: B×in_c×H×W degraded image in [0, 1] → B×in_c×H×W restored image (any H, W ≥ 1, batch ≥ 1).

    The input y is padded at the bottom/right (reflect, or replicate when the image is too small) to a
    multiple of 2^(unet_depth−1) = 8 and to at least twice that (so the coarsest level, which is
    instance-normalised, has more than one pixel), restored in depth + 2 = 7 stages, and cropped back.
    """

    step_text = "the learned gradient step size r of every stage (stages 2 to depth + 1 share theirs)"

    def __init__(self, cfg: DGUNetConfig | None = None, **overrides):
        super().__init__()
        cfg = cfg or DGUNetConfig()
        if overrides:
            cfg = DGUNetConfig(**{**cfg.to_dict(), **overrides})
        self.cfg = cfg
        c, n = cfg.in_c, cfg.n_feat
        grad_act = nn.PReLU()  # shared by every Φ/Φᵀ ResBlock, as in the authors' model
        act = nn.PReLU()  # shared by the CABs of stages 1 and 7
        # stage 1
        self.phi_0 = ResBlock(c, cfg.resblock_feats, grad_act)
        self.phit_0 = ResBlock(c, cfg.resblock_feats, grad_act)
        self.r0 = nn.Parameter(torch.tensor([0.5]))
        self.shallow_feat1 = shallow_features(cfg, act)
        self.stage1_encoder = Encoder(n, cfg.scale_unetfeats, cfg.unet_depth, cfg.relu_slope, csff=False)
        self.stage1_decoder = Decoder(n, cfg.scale_unetfeats, cfg.unet_depth, cfg.relu_slope)
        self.sam12 = SAM(n, cfg.out_c, cfg.bias)
        # stages 2 … depth + 1
        self.basic = DGUNetStage(cfg, grad_act)
        # last stage
        self.phi_6 = ResBlock(c, cfg.resblock_feats, grad_act)
        self.phit_6 = ResBlock(c, cfg.resblock_feats, grad_act)
        self.r6 = nn.Parameter(torch.tensor([0.5]))
        self.shallow_feat7 = shallow_features(cfg, act)
        self.concat67 = _conv(2 * n, n + cfg.scale_orsnetfeats, cfg.kernel_size, cfg.bias)
        self.tail = _conv(n + cfg.scale_orsnetfeats, cfg.out_c, cfg.kernel_size, cfg.bias)
        self.validate_inputs = True

    # ---------------------------------------------------------------------------------------------------
    def check_input(self, x: Tensor) -> None:
        """Raise InterIRError (one line) for input the network cannot restore."""
        check_image_batch(x, self.cfg.in_c, "DGUNet")

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        """The H×W the network works at for an h×w input."""
        m = self.cfg.multiple
        return max(-(-h // m) * m, 2 * m), max(-(-w // m) * m, 2 * m)

    def _pad(self, x: Tensor) -> Tensor:
        return pad_bottom_right(x, *self.padded_size(x.shape[-2], x.shape[-1]))

    def forward(self, x: Tensor, return_stages: bool = False):
        """x: B×C×H×W → restored B×C×H×W; with `return_stages`, (restored, [the depth + 2 stage images, first
        to last]) — the last is the restored image itself."""
        if self.validate_inputs:
            self.check_input(x)
        return in_network_dtype(self, self._forward, x, return_stages)

    def _forward(self, x: Tensor, return_stages: bool):
        h, w = x.shape[-2:]
        y = self._pad(x)
        # stage 1: gradient step from z = y, then a U-Net without cross-stage inputs
        x_img = gradient_step(y, y, self.phi_0, self.phit_0, self.r0)
        skips, bottom = self.stage1_encoder(self.shallow_feat1(x_img))
        outs = self.stage1_decoder(bottom, skips)
        sam_feat, img = self.sam12(outs[-1], x_img)
        stages = [img]
        # stages 2 … depth + 1: one shared stage, fed the previous stage's image, features and SAM features
        for _ in range(self.cfg.depth):
            sam_feat, img, skips, outs = self.basic(y, img, skips, outs, sam_feat)
            stages.append(img)
        # last stage: gradient step, shallow features concatenated with the SAM features, conv tail
        x_img = gradient_step(img, y, self.phi_6, self.phit_6, self.r6)
        feat = self.concat67(torch.cat([self.shallow_feat7(x_img), sam_feat], 1))
        out = (y + self.tail(feat))[..., :h, :w]
        if not return_stages:
            return out
        return out, [s[..., :h, :w] for s in stages] + [out]

    @property
    def padding_multiple(self) -> int:
        return self.cfg.multiple

    def step_sizes(self) -> list[float]:
        """The learned gradient step r of every stage, in order (the shared middle stage's r repeated)."""
        r_mid = self.basic.r1.item()
        return [self.r0.item()] + [r_mid] * self.cfg.depth + [self.r6.item()]


# ------------------------------------------------------------------------------------------------ loss
def charbonnier_loss(pred: Tensor, target: Tensor, eps: float = 1e-3) -> Tensor:
    """mean(√((pred − target)² + eps²)) (the authors' CharbonnierLoss)."""
    diff = pred - target
    return torch.sqrt(diff * diff + eps * eps).mean()


def _gauss_filter(x: Tensor) -> Tensor:
    """5×5 binomial-like Gaussian (outer product of [.05, .25, .4, .25, .05]) per channel, replicate padding."""
    k1 = torch.tensor([0.05, 0.25, 0.4, 0.25, 0.05], dtype=x.dtype, device=x.device)
    kernel = (k1[:, None] * k1[None, :]).expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernel, groups=x.shape[1])


def laplacian(x: Tensor) -> Tensor:
    """One Laplacian-pyramid level: x − G(4 · G(x) kept at even pixels, zero elsewhere), B×C×H×W → same."""
    filtered = _gauss_filter(x)
    keep = torch.zeros(x.shape[-2:], dtype=x.dtype, device=x.device)
    keep[::2, ::2] = 4.0
    return x - _gauss_filter(filtered * keep)


def edge_loss(pred: Tensor, target: Tensor, eps: float = 1e-3) -> Tensor:
    """Charbonnier distance between the Laplacians of pred and target (the authors' EdgeLoss)."""
    return charbonnier_loss(laplacian(pred), laplacian(target), eps)


def dgunet_loss(stages: Sequence[Tensor] | Tensor, target: Tensor, edge_weight: float = 0.05,
                eps: float = 1e-3) -> Tensor:
    """The authors' multi-stage loss: Σ_k Charbonnier(stage_k, target) + edge_weight · Σ_k Edge(stage_k, target).

    `stages`: the stage images (any order), e.g. the list `DGUNet(x, return_stages=True)[1]`, each B×C×H×W like
    `target`. edge_weight 0.05 is their deraining/deblurring recipe (their denoising script uses the
    Charbonnier term alone, on clamped outputs: edge_weight=0 and clamp the stages yourself). Computed in
    float32 at least; returns a scalar.
    """
    if isinstance(stages, Tensor):
        stages = [stages]
    if len(stages) == 0:
        raise InterIRError("dgunet_loss needs at least one stage image")
    for s in stages:
        if s.shape != target.shape:
            raise InterIRError(f"dgunet_loss: stage shape {tuple(s.shape)} differs from target shape "
                               f"{tuple(target.shape)}")
    acc = torch.promote_types(target.dtype, torch.float32)
    t = target.to(acc)
    char = sum(charbonnier_loss(s.to(acc), t, eps) for s in stages)
    if edge_weight == 0:
        return char
    lap_t = laplacian(t)
    edge = sum(charbonnier_loss(laplacian(s.to(acc)), lap_t, eps) for s in stages)
    return char + edge_weight * edge


__all__ = [
    "DGUNetConfig", "DGUNET_PRESETS", "dgunet_preset_config", "build_dgunet", "DGUNet", "DGUNetStage",
    "ResBlock", "CALayer", "CAB", "SAM", "MergeBlock", "UNetConvBlock", "UNetUpBlock", "Encoder", "Decoder",
    "gradient_step", "charbonnier_loss", "laplacian", "edge_loss", "dgunet_loss",
]
