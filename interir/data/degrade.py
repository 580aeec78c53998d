"""Multi-degradation synthesis: haze → rain → noise (docs/data.md), seeded and versioned.

    x: B×3×H×W (or 3×H×W) float in [0, 1], any device
    y, params = degrade(x, haze=100, rain=150, noise=25, seed=7)
    y: same shape, dtype and device as x; params: one dict per sample (a dict if x was 3×H×W)

Level scales (docs/data.md): haze ∈ [0, 150] (150 ≈ mean transmission 0.15 at any size), rain ∈ [0, 300]
(0 none, 300 torrential), noise σ ∈ [0, 50] on the 0–255 scale. Level 0 leaves the image bit-identical.

Reproducibility: every random field (rain seeds, noise) and every parameter-dependent map (transmission,
rain layer) is computed on the CPU in float64 from a per-sample seed and only then cast to float32 and
moved to the image's device, where it is combined with the image by single correctly-rounded element-wise
operations. So, for a given seed, GENERATOR_VERSION and torch random-number stream, the result has the
same bytes on any CPU and on GPU. Each sample's own seed is recorded in its params:
`degrade(x[i], **levels, seed=params[i]["seed"])` regenerates sample i alone.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch

from interir.errors import InterIRError

# Bump whenever any output byte for a given seed could change.
GENERATOR_VERSION = 1

COMBINATIONS: tuple[str, ...] = ("H+R+N", "H+R", "H+N", "R+N", "H", "R", "N")
KINDS = ("haze", "rain", "noise")
LEVEL_MAX: dict[str, float] = {"haze": 150.0, "rain": 300.0, "noise": 50.0}
_LETTER = {"H": "haze", "R": "rain", "N": "noise"}

# Haze (docs/data.md): pseudo-depth d = 1 − (1 − DEPTH_NEAR)·r/r_max ∈ [DEPTH_NEAR, 1], r = distance from the
# image centre in pixels, r_max = half-diagonal (the centre is farthest). Normalising r makes the map, and so
# the mean transmission at a level, independent of the image size. β = BETA_AT_MAX·level/150 with
# BETA_AT_MAX fitted so that level 150 gives mean(t) = 0.150 on a square image (0.149–0.151 from 16² to
# 1080×1920; ≈0.28 at level 100, ≈0.52 at 50, ≈0.88 at 10).
DEPTH_NEAR = 0.4
BETA_AT_MAX = 2.896
AIRLIGHT_RANGE = (0.7, 1.0)

# Rain (docs/data.md): a fraction RAIN_DENSITY_AT_MAX·level/300 of pixels seed a streak of brightness
# U[0.35, 1]; streaks are an anti-aliased line of `length` px at `angle` degrees from vertical;
# the layer S ∈ [0, 1] is screen-blended with opacity RAIN_OPACITY: y = 1 − (1 − x)(1 − α·S).
RAIN_DENSITY_AT_MAX = 0.01
RAIN_OPACITY = 0.8
ANGLE_RANGE = (-45.0, 45.0)
LENGTH_RANGE = (10, 30)

_MASK64 = (1 << 64) - 1
_HAZE, _RAIN, _NOISE = 1, 2, 3  # stream tags for the per-degradation generators


# ---------------------------------------------------------------------------------------------- seeds


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix_seed(*parts: int) -> int:
    """A seed in [0, 2**63) derived from integers (stable across runs, platforms and Python versions)."""
    h = 0x243F6A8885A308D3
    for p in parts:
        h = _splitmix64(h ^ (int(p) & _MASK64))
    return h >> 1


def sample_seed(seed: int, index: int) -> int:
    """Seed of sample `index` of a batch degraded with one integer seed (sample 0 keeps `seed` itself)."""
    return int(seed) if index == 0 else mix_seed(seed, index)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(int(seed))


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))


# ------------------------------------------------------------------------------------------- combos


def parse_combo(combo: str) -> str:
    """Canonical combination name ('H+R+N' order) from e.g. 'hrn', 'N+H' or 'R'."""
    letters = {c for c in combo.upper() if c not in "+ "}
    if not letters or not letters <= set(_LETTER):
        raise InterIRError(f"unknown degradation combination {combo!r}; use one of {', '.join(COMBINATIONS)}")
    return "+".join(c for c in "HRN" if c in letters)


def combo_of(levels: Mapping[str, float]) -> str:
    """The combination name of the non-zero levels ('' when all are zero)."""
    return "+".join(c for c, k in _LETTER.items() if float(levels.get(k, 0.0)) > 0)


def sample_levels(combo: str, generator: torch.Generator | int | None = None,
                  ranges: Mapping[str, tuple[float, float]] | None = None) -> dict[str, float]:
    """Levels for one image of `combo`: uniform in each present degradation's range, 0 for absent ones.

    Always draws three numbers (haze, rain, noise) so the stream does not depend on the combination.
    `generator`: a CPU torch.Generator, an int seed, or None (torch's global generator).
    `ranges`: per kind (lo, hi); default (0, LEVEL_MAX[kind]) as docs/data.md says.
    """
    present = {_LETTER[c] for c in parse_combo(combo).split("+")}
    g = _generator(generator) if isinstance(generator, int) else generator
    out = {}
    for kind in KINDS:
        lo, hi = (ranges or {}).get(kind, (0.0, LEVEL_MAX[kind]))
        u = float(torch.rand((), generator=g, dtype=torch.float64))
        out[kind] = lo + (hi - lo) * u if kind in present else 0.0
    return out


# ------------------------------------------------------------------------------------- single fields


def pseudo_depth(height: int, width: int) -> torch.Tensor:
    """H×W float64 pseudo-depth in [DEPTH_NEAR, 1]: 1 at the centre, DEPTH_NEAR at the corners."""
    y = torch.arange(height, dtype=torch.float64) + 0.5 - height / 2
    x = torch.arange(width, dtype=torch.float64) + 0.5 - width / 2
    r = torch.sqrt(y[:, None] ** 2 + x[None, :] ** 2) / math.hypot(height / 2, width / 2)
    return 1.0 - (1.0 - DEPTH_NEAR) * r


def haze_beta(level: float) -> float:
    """Scattering coefficient β for a haze level (0 → 0, 150 → BETA_AT_MAX)."""
    return BETA_AT_MAX * float(level) / LEVEL_MAX["haze"]


def transmission(level: float, height: int, width: int, depth: torch.Tensor | None = None) -> torch.Tensor:
    """H×W float64 transmission t = exp(−β·d). A given depth (H×W, any unit) is scaled so its max is 1."""
    if depth is None:
        d = pseudo_depth(height, width)
    else:
        d = depth.detach().to("cpu", torch.float64).reshape(height, width)
        dmax = float(d.max())
        if not math.isfinite(dmax) or dmax <= 0 or float(d.min()) < 0:
            raise InterIRError("depth map must be finite, non-negative and not all zero")
        d = d / dmax
    return torch.exp(-haze_beta(level) * d)


def line_kernel(length: float, angle: float) -> torch.Tensor:
    """k×k float64 anti-aliased line (k = odd ≥ length), peak 1, through the centre.

    The line runs along (dy, dx) = (cos θ, sin θ): θ = 0 is vertical, θ > 0 leans so that going down moves
    right. Weight = (1 − |distance across|)₊ · clip(length/2 + ½ − |distance along|, 0, 1).
    """
    k = int(math.ceil(length)) | 1
    r = torch.arange(k, dtype=torch.float64) - k // 2
    dy, dx = r[:, None], r[None, :]
    th = math.radians(angle)
    along = dy * math.cos(th) + dx * math.sin(th)
    across = -dy * math.sin(th) + dx * math.cos(th)
    return (1 - across.abs()).clamp(min=0) * (length / 2 + 0.5 - along.abs()).clamp(0, 1)


def correlate_valid(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Valid 2-D correlation of x (H×W) with kernel (k×k): (H−k+1)×(W−k+1), the same as
    F.conv2d(x[None, None], kernel[None, None]) but summed tap by tap in a fixed order over the non-zero
    taps only, so the result is bit-reproducible (no BLAS/ISA-dependent summation order) and, for a sparse
    line kernel, several times cheaper than a dense conv."""
    k = kernel.shape[-1]
    h, w = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    out = torch.zeros(h, w, dtype=x.dtype)
    for i, j in torch.nonzero(kernel).tolist():
        out += kernel[i, j] * x[i:i + h, j:j + w]
    return out


def rain_layer(level: float, height: int, width: int, angle: float, length: int,
               generator: torch.Generator) -> torch.Tensor:
    """H×W float64 rain-streak layer S ∈ [0, 1] (docs/data.md: seeds → motion blur along the angle).

    The seed field is drawn on a canvas larger by the kernel size so streaks enter from outside the image.
    For a fixed generator state the seeds at a higher level are a superset of those at a lower level.
    """
    kernel = line_kernel(length, angle)
    k = kernel.shape[-1]
    u = torch.rand(height + k - 1, width + k - 1, generator=generator, dtype=torch.float64)
    v = torch.rand(height + k - 1, width + k - 1, generator=generator, dtype=torch.float64)
    density = RAIN_DENSITY_AT_MAX * float(level) / LEVEL_MAX["rain"]
    seeds = torch.where(u < density, 0.35 + 0.65 * v, torch.zeros_like(u))
    return correlate_valid(seeds, kernel).clamp_(0, 1)


# ------------------------------------------------------------------------------------------ degrade


def _per_sample(value, n: int, name: str) -> list:
    if isinstance(value, torch.Tensor):
        value = value.flatten().tolist()
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise InterIRError(f"{name}: got {len(value)} values for a batch of {n}")
        return list(value)
    return [value] * n


def _check_level(kind: str, level) -> float:
    level = float(level)
    if not math.isfinite(level) or level < 0:
        raise InterIRError(f"{kind} level must be a finite number ≥ 0, got {level}")
    return level


def degrade(clean: torch.Tensor, haze=0.0, rain=0.0, noise=0.0, *, seed: int | Sequence[int] | None = None,
            generator: torch.Generator | None = None, depth: torch.Tensor | None = None,
            airlight=None, angle=None, length=None):
    """Apply haze → rain → noise (docs/data.md) to clean images.

    clean: B×3×H×W or 3×H×W (any channel count works) floating tensor in [0, 1], on any device.
    haze, rain, noise: a level (float) or one per sample (sequence/tensor of B).
    seed: int (sample i uses sample_seed(seed, i)) or one int per sample. Without a seed, per-sample seeds
        are drawn from `generator` (CPU torch.Generator) or from torch's global generator.
    depth: optional depth map(s) for haze: H×W, 1×H×W, B×H×W or B×1×H×W (scaled so each max is 1).
    airlight, angle, length: optional overrides (scalar or per sample) of the values the seed draws.
    Returns (degraded like clean, params): params is a list of B dicts (a dict for 3-D input) holding
    version, seed, haze, rain, noise, airlight, beta, mean_transmission, angle, length.
    """
    if not isinstance(clean, torch.Tensor) or not clean.is_floating_point() or clean.dim() not in (3, 4):
        raise InterIRError("degrade expects a floating tensor of shape B×C×H×W or C×H×W in [0, 1]")
    single = clean.dim() == 3
    x = clean[None] if single else clean
    b, _, h, w = x.shape
    if seed is None:
        seeds = [int(torch.randint(0, 2**63 - 1, (), generator=generator)) for _ in range(b)]
    elif isinstance(seed, (list, tuple, torch.Tensor)):
        seeds = [int(s) for s in _per_sample(seed, b, "seed")]
    else:
        seeds = [sample_seed(int(seed), i) for i in range(b)]
    levels = {k: [_check_level(k, v) for v in _per_sample(lv, b, k)]
              for k, lv in (("haze", haze), ("rain", rain), ("noise", noise))}
    airlights, angles, lengths = (_per_sample(v, b, n) for v, n in
                                  ((airlight, "airlight"), (angle, "angle"), (length, "length")))
    if depth is not None:
        if depth.numel() % (h * w):
            raise InterIRError(f"depth map of shape {tuple(depth.shape)} does not fit images of {h}×{w}")
        depth = depth.reshape(-1, h, w)
        if depth.shape[0] not in (1, b):
            raise InterIRError(f"depth: got {depth.shape[0]} maps for a batch of {b}")

    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    y = x.to(compute)
    params = []
    haze_t, haze_a, rain_q, noise_n = [], [], [], []
    for i in range(b):
        g_haze, g_rain, g_noise = (_generator(mix_seed(seeds[i], tag)) for tag in (_HAZE, _RAIN, _NOISE))
        # scalars are always drawn, in a fixed order, so overrides and absent degradations keep streams aligned
        a = _uniform(g_haze, *AIRLIGHT_RANGE)
        a = float(airlights[i]) if airlights[i] is not None else a
        th = _uniform(g_rain, *ANGLE_RANGE)
        th = float(angles[i]) if angles[i] is not None else th
        ln = int(torch.randint(LENGTH_RANGE[0], LENGTH_RANGE[1] + 1, (), generator=g_rain))
        ln = int(lengths[i]) if lengths[i] is not None else ln
        lh, lr, lnz = levels["haze"][i], levels["rain"][i], levels["noise"][i]
        p = {"version": GENERATOR_VERSION, "seed": seeds[i], "haze": lh, "rain": lr, "noise": lnz,
             "airlight": a, "beta": haze_beta(lh), "mean_transmission": 1.0, "angle": th, "length": ln}
        if lh > 0:
            t = transmission(lh, h, w, None if depth is None else depth[i % depth.shape[0]])
            p["mean_transmission"] = float(t.mean())
            haze_t.append(t.to(compute))
            haze_a.append((a * (1 - t)).to(compute))  # A·(1 − t)
        if lr > 0:
            rain_q.append((1 - RAIN_OPACITY * rain_layer(lr, h, w, th, ln, g_rain)).to(compute))
        if lnz > 0:
            noise_n.append((torch.randn(x.shape[1], h, w, generator=g_noise, dtype=torch.float64)
                            * (lnz / 255.0)).to(compute))
        params.append(p)

    def stack(maps: list[torch.Tensor], kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        idx = [i for i in range(b) if levels[kind][i] > 0]
        m = torch.stack(maps)
        m = m[:, None] if m.dim() == 3 else m
        return torch.tensor(idx, device=x.device), m.to(x.device)

    # Element-wise combination on the image's device, one correctly-rounded op at a time (docs/data.md's order).
    if haze_t:
        idx, t = stack(haze_t, "haze")
        _, at = stack(haze_a, "haze")
        y = y.index_copy(0, idx, y[idx] * t + at)
    if rain_q:
        idx, q = stack(rain_q, "rain")
        y = y.index_copy(0, idx, 1 - (1 - y[idx]) * q)  # screen blend
    if noise_n:
        idx, n = stack(noise_n, "noise")
        y = y.index_copy(0, idx, y[idx] + n)
    if haze_t or rain_q or noise_n:
        y = y.clamp(0, 1)
    y = y.to(x.dtype)
    if y is x:  # nothing applied: never hand back the caller's tensor itself
        y = x.clone()
    if single:
        return y[0], params[0]
    return y, params


def degrade_combo(clean: torch.Tensor, combo: str, *, seed: int | None = None,
                  generator: torch.Generator | None = None, **kwargs):
    """Degrade one image (3×H×W) with random levels for `combo` drawn from the seed (docs/data.md).

    The levels come from sample_levels(combo, Generator(seed)); the degradation uses the same seed.
    Returns (degraded, params) with params["combo"] set.
    """
    if seed is None:
        seed = int(torch.randint(0, 2**63 - 1, (), generator=generator))
    combo = parse_combo(combo)
    levels = sample_levels(combo, _generator(seed))
    y, p = degrade(clean, **levels, seed=seed, **kwargs)
    if isinstance(p, dict):
        p["combo"] = combo
    else:
        for q in p:
            q["combo"] = combo
    return y, p
