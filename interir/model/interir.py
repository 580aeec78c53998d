"""InterIR (docs/model.md): an improved semi-smooth Newton method unfolded into N IPBlocks + a final RESM.

State carried between stages, all at 1/4 resolution (h = H/4, w = W/4):
X (the image estimate, B×C×h×w), M (Lagrange multiplier, B×C×h×w), P1 (B×C×h×h) and P2 (B×C×w×w), the
Kronecker factors of the degradation operator P(X) = P1·X·P2, and Dd, the embedded degraded image.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
from torch import Tensor

from interir import ops
from interir.model.blocks import Convs, EPBlock, frobenius_normalize
from interir.model.inputs import check_image_batch, in_network_dtype, pad_to_multiple
from interir.model.presets import PRESETS
from interir.model.protocol import RestorationModel
from interir.model.registry import register_model
from interir.validation import expect_bool, expect_float, expect_int, expect_mapping


@dataclass(frozen=True)
class InterIRConfig:
    """Every switch of the network. Presets live in interir.model.presets."""

    channels: int = 48  # C
    num_blocks: int = 16  # N IPBlocks
    expand: int = 8  # e of Convs
    explainable: bool = True  # EPBlock's 3×3 conv: ExplainableConv (True) or nn.Conv2d (False)
    additive_resm: bool = True  # F = G + W⊙B + … (True) or DeepSN-Net's G − B + … (False)
    weighted_dmum: bool = True  # ω gates in DMUM (True) or DeepSN-Net's plain form (False)
    depthwise: bool = False  # EPBlock's 3×3 conv depthwise instead of full
    tau: float = 0.5  # temperature of the mask's straight-through surrogate
    eta_init: float = 0.01  # initial step size η of every RESM
    in_channels: int = 3
    scale: int = 4  # PixelUnshuffle factor
    extra: dict = field(default_factory=dict, compare=False)  # free-form metadata (preset name, …)

    def __post_init__(self):
        """Every field checked (one InterIRError line naming it); numbers normalised to int/float."""
        name = "InterIR option"
        for key, low in (("channels", 1), ("num_blocks", 0), ("expand", 1), ("in_channels", 1), ("scale", 1)):
            object.__setattr__(self, key, expect_int(f"{name} {key}", getattr(self, key), minimum=low))
        for key in ("explainable", "additive_resm", "weighted_dmum", "depthwise"):
            expect_bool(f"{name} {key}", getattr(self, key))
        object.__setattr__(self, "tau", expect_float(f"{name} tau", self.tau, minimum=0, open_min=True))
        object.__setattr__(self, "eta_init", expect_float(f"{name} eta_init", self.eta_init))
        expect_mapping(f"{name} extra", self.extra)

    def to_dict(self) -> dict:
        return asdict(self)


def _ep(cfg: InterIRConfig, c: int) -> EPBlock:
    return EPBlock(c, explainable=cfg.explainable, depthwise=cfg.depthwise, tau=cfg.tau)


class RESM(nn.Module):
    """Restoration-equation solver: one unfolded step on the ISN residual (docs/model.md, RESM).

    forward(X, M, Dd, P1, P2) → the updated X; all maps B×C×h×w.
    """

    def __init__(self, cfg: InterIRConfig):
        super().__init__()
        c, e = cfg.channels, cfg.expand
        self.additive = cfg.additive_resm
        self.ep0, self.ep1, self.ep2, self.ep3, self.ep4 = (_ep(cfg, c) for _ in range(5))
        self.convs_z = Convs(c, c, e)
        self.convs_s = Convs(c, c, e)
        self.convs_w = Convs(2 * c, c, e) if self.additive else None
        self.eta = nn.Parameter(torch.tensor(float(cfg.eta_init)))

    def forward(self, x: Tensor, m: Tensor, dd: Tensor, p1: Tensor, p2: Tensor) -> Tensor:
        u = self.ep0(x) + m
        z = self.convs_z(u)  # auxiliary variable (the prox output)
        s = self.convs_s(u)  # the prox's subderivative
        gram1, gram2 = ops.kron_gram(p1, p2)  # once, for both PᵀP below
        g = ops.kron_normal(x, gram1, gram2).to(x.dtype)  # PᵀP(X)
        b = ops.kron_apply(dd, p1, p2, transpose=True).to(x.dtype)  # Pᵀ(Dd)
        prox = self.ep2(self.ep1(x) + m + z)
        if self.additive:
            f = g + self.convs_w(torch.cat([g, b], 1)) * b + prox
        else:
            f = g - b + prox
        r = self.ep4(self.ep3(f) * (1 - s))
        # X − η·(PᵀP(F) + R)
        return ops.kron_step(x, f, gram1, gram2, r, self.eta).to(x.dtype)


class DMUM(nn.Module):
    """Degradation-matrix update: closed form of the P sub-problem, unfolded (docs/model.md, DMUM).

    forward(X, Dd, P2) → (P1: B×C×h×h, P2: B×C×w×w), each Frobenius-normalised per (b, c).
    """

    def __init__(self, cfg: InterIRConfig):
        super().__init__()
        c, e = cfg.channels, cfg.expand
        self.weighted = cfg.weighted_dmum
        self.convs_w1 = Convs(2 * c, c, e) if self.weighted else None
        self.convs_w2 = Convs(2 * c, c, e) if self.weighted else None
        self.ep_p = _ep(cfg, 2 * c)
        self.ep_q = _ep(cfg, 2 * c)

    def _gated(self, left: Tensor, dd: Tensor, convs: nn.Module | None) -> Tensor:
        if convs is None:
            return torch.cat([left, dd], 1)
        return torch.cat([left, convs(torch.cat([left, dd], 1)) * dd], 1)

    def forward(self, x: Tensor, dd: Tensor, p2: Tensor) -> tuple[Tensor, Tensor]:
        xp2 = x @ p2.to(x.dtype)
        a1, a2 = self.ep_p(self._gated(xp2, dd, self.convs_w1)).chunk(2, 1)
        p1 = frobenius_normalize(a1 @ a2.transpose(-1, -2))  # h×h
        p1x = p1.to(x.dtype) @ x
        b1, b2 = self.ep_q(self._gated(p1x, dd, self.convs_w2)).chunk(2, 1)
        p2 = frobenius_normalize(b1.transpose(-1, -2) @ b2)  # w×w
        return p1, p2


class MUM(nn.Module):
    """Multiplier update M ← M + EP_M(X) − Convs_z'(EP0'(X) + M) (docs/model.md, MUM)."""

    def __init__(self, cfg: InterIRConfig):
        super().__init__()
        self.ep_m = _ep(cfg, cfg.channels)
        self.ep0 = _ep(cfg, cfg.channels)
        self.convs_z = Convs(cfg.channels, cfg.channels, cfg.expand)

    def forward(self, x: Tensor, m: Tensor) -> Tensor:
        return m + self.ep_m(x) - self.convs_z(self.ep0(x) + m)


class IPBlock(nn.Module):
    """One unfolded ISN iteration: RESM → DMUM → MUM. forward(X, M, Dd, P1, P2) → (X, M, P1, P2)."""

    def __init__(self, cfg: InterIRConfig):
        super().__init__()
        self.resm = RESM(cfg)
        self.dmum = DMUM(cfg)
        self.mum = MUM(cfg)

    def forward(self, x, m, dd, p1, p2):
        x = self.resm(x, m, dd, p1, p2)
        p1, p2 = self.dmum(x, dd, p2)
        m = self.mum(x, m)
        return x, m, p1, p2


@register_model("interir", config=InterIRConfig, presets=PRESETS, default_preset="paper", smallest_preset="tiny",
                loss="l1_fft")
class InterIR(RestorationModel):
    """InterIR network: B×3×H×W degraded image in [0, 1] → B×3×H×W restored image (any H, W ≥ 1).

    The input is reflect-padded to a multiple of `scale`, embedded at 1/scale resolution (PixelUnshuffle +
    3×3 conv), refined by N IPBlocks and a final RESM, mapped back (3×3 conv + PixelShuffle) to a residual,
    and cropped: Î = D + R.
    """

    # the image-space convs: in int8 too, the C = 48 successor lost 0.06 dB instead of 0.01 (README, `interir pack`)
    full_precision_layers = ("down", "up")
    stage_text = ("Each IPBlock is one iteration of the unfolded semi-smooth Newton solver (RESM: a gradient step "
                  "on the restoration equation; DMUM: update of the degradation operator's Kronecker factors P1, "
                  "P2; MUM: update of the Lagrange multiplier). Image <i>k</i> is Î<sub>k</sub> = D + "
                  "Up(X<sub>k</sub>), the solver's estimate after <i>k</i> iterations mapped back to pixels; the "
                  "last one, after the final RESM, is the output.")
    step_text = "the learned η of every RESM's gradient step X ← X − η·V"

    def __init__(self, cfg: InterIRConfig | None = None, **overrides):
        super().__init__()
        cfg = cfg or InterIRConfig()
        if overrides:
            cfg = InterIRConfig(**{**cfg.to_dict(), **overrides})
        self.cfg = cfg
        c, s, cin = cfg.channels, cfg.scale, cfg.in_channels
        self.down = nn.Sequential(nn.PixelUnshuffle(s), nn.Conv2d(cin * s * s, c, 3, padding=1, bias=False))
        self.init_m = nn.Conv2d(c, c, 1)
        self.blocks = nn.ModuleList(IPBlock(cfg) for _ in range(cfg.num_blocks))
        self.final = RESM(cfg)
        self.up = nn.Sequential(nn.Conv2d(c, cin * s * s, 3, padding=1, bias=False), nn.PixelShuffle(s))
        self.validate_inputs = True

    # ---------------------------------------------------------------------------------------------------
    def check_input(self, d: Tensor) -> None:
        """Raise InterIRError (one line) for input the network cannot restore."""
        check_image_batch(d, self.cfg.in_channels, "InterIR")

    def _pad(self, d: Tensor) -> Tensor:
        return pad_to_multiple(d, self.cfg.scale)

    def embed(self, d: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Down + Init (docs/model.md, Network steps 1–2): padded D → (Dd, M, P1, P2)."""
        dd = self.down(d)
        m = self.init_m(dd) + dd
        p1 = frobenius_normalize(dd @ dd.transpose(-1, -2))  # h×h
        p2 = frobenius_normalize(dd.transpose(-1, -2) @ dd)  # w×w
        return dd, m, p1, p2

    def forward(self, d: Tensor, return_stages: bool = False):
        """d: B×3×H×W → restored B×3×H×W; with `return_stages`, also the list of N+1 stage images
        (each IPBlock's X and the final X mapped through the up path, Î_k = D + Up(X_k))."""
        if self.validate_inputs:
            self.check_input(d)
        return in_network_dtype(self, self._forward, d, return_stages)

    def _forward(self, d: Tensor, return_stages: bool):
        hh, ww = d.shape[-2:]
        dp = self._pad(d)
        dd, m, p1, p2 = self.embed(dp)
        x = dd
        states = []
        for block in self.blocks:
            x, m, p1, p2 = block(x, m, dd, p1, p2)
            if return_stages:
                states.append(x)
        x = self.final(x, m, dd, p1, p2)
        out = (dp + self.up(x).to(dp.dtype))[..., :hh, :ww]
        if not return_stages:
            return out
        stages = [(dp + self.up(s).to(dp.dtype))[..., :hh, :ww] for s in states] + [out]
        return out, stages

    # ----------------------------------------------------------------------- protocol (interir.model.protocol)
    @property
    def padding_multiple(self) -> int:
        return self.cfg.scale

    def step_sizes(self) -> list[float]:
        """The learned η of every RESM, in order (N IPBlocks, then the final RESM)."""
        return [b.resm.eta.item() for b in self.blocks] + [self.final.eta.item()]

    def step_labels(self) -> list[str]:
        return [f"RESM {i + 1}" for i in range(len(self.blocks))] + ["final"]

    @property
    def initial_step_size(self) -> float:
        return self.cfg.eta_init

    def stage_labels(self, count: int) -> list[str]:
        return [f"after IPBlock {i + 1}" for i in range(count - 1)] + ["after final RESM (output)"]

    def explanation_group(self, conv_name: str) -> tuple[str, str, str]:
        """Group a conv by its IPBlock (key "01", …) or the final RESM ("final"); name it by its EPBlock."""
        parts = conv_name.split(".")
        if parts[-1] == "conv2":  # the EPBlock's 3×3 conv: name it by its EPBlock
            parts = parts[:-1]
        if parts[0] == "blocks" and len(parts) > 1 and parts[1].isdigit():
            i = int(parts[1])
            return f"{i + 1:02d}", f"IPBlock {i + 1}", " ".join(p.upper() for p in parts[2:]) or conv_name
        if parts[0] == "final":
            return "final", "final RESM", "RESM " + " ".join(p.upper() for p in parts[1:])
        return super().explanation_group(conv_name)
