"""interir.data.degrade: level scales, monotonicity and determinism of haze/rain/noise synthesis (docs/data.md)."""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from interir.data import degrade as D
from interir.errors import InterIRError

skdata = pytest.importorskip("skimage.data")
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


def photo(name: str, top: int, left: int, size: int = 96) -> torch.Tensor:
    """3×size×size float crop of a scikit-image photograph."""
    a = getattr(skdata, name)()[top:top + size, left:left + size]
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255


def opencv_photo(name: str, size: int = 96) -> torch.Tensor:
    from PIL import Image

    path = OPENCV_DATA / name
    if not path.is_file():
        pytest.skip(f"opencv-doc sample {path} not installed (apt-get install opencv-doc)")
    a = np.asarray(Image.open(path).convert("RGB"))
    top, left = (a.shape[0] - size) // 2, (a.shape[1] - size) // 2
    return torch.from_numpy(a[top:top + size, left:left + size].copy()).permute(2, 0, 1).float() / 255


PHOTOS = [
    pytest.param(lambda: photo("coffee", 150, 200), id="skimage-coffee"),
    pytest.param(lambda: photo("astronaut", 40, 180), id="skimage-astronaut"),
    pytest.param(lambda: opencv_photo("fruits.jpg"), id="opencv-fruits"),
]


def luminance(x: torch.Tensor) -> torch.Tensor:
    return 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]


# ---------------------------------------------------------------------------------------------- noise


@pytest.mark.parametrize("sigma", [5.0, 15.0, 25.0, 35.0])
def test_noise_residual_std_is_the_level_on_255_scale(sigma):
    grey = torch.full((3, 128, 128), 0.5)
    y, p = D.degrade(grey, noise=sigma, seed=11)
    residual = (y - grey) * 255
    assert residual.std().item() == pytest.approx(sigma, rel=0.05)
    assert abs(residual.mean().item()) < 0.05 * sigma
    assert p["noise"] == sigma and p["haze"] == 0 and p["rain"] == 0


def test_noise_is_clipped_to_unit_range():
    x = photo("astronaut", 0, 0, 64)
    y, _ = D.degrade(x, noise=50, seed=2)
    assert y.min() >= 0 and y.max() <= 1
    assert (y == 0).any() or (y == 1).any()  # σ = 50 pushes some pixels past the range


# ----------------------------------------------------------------------------------------------- haze


@pytest.mark.parametrize("size", [(64, 64), (300, 180)])
def test_haze_150_leaves_mean_transmission_between_0_1_and_0_2_at_any_size(size):
    # On a black image with airlight 1, y = 1 − t: the transmission is read off the pixels.
    black = torch.zeros(3, *size)
    y, p = D.degrade(black, haze=150, airlight=1.0, seed=5)
    t = 1 - y
    assert 0.1 <= t.mean().item() <= 0.2
    assert p["mean_transmission"] == pytest.approx(t.mean().item(), abs=1e-6)
    assert t[:, size[0] // 2, size[1] // 2].max() < t[:, 0, 0].min()  # the centre is the farthest


def test_haze_follows_the_scattering_model():
    x = photo("chelsea", 50, 150, 48)
    y, p = D.degrade(x, haze=70, seed=9)
    t = D.transmission(70, 48, 48).float()
    expected = x * t + (p["airlight"] * (1 - D.transmission(70, 48, 48))).float()
    assert torch.allclose(y, expected.clamp(0, 1), atol=1e-6)
    assert D.AIRLIGHT_RANGE[0] <= p["airlight"] <= D.AIRLIGHT_RANGE[1]


@pytest.mark.parametrize("make", PHOTOS)
def test_haze_lowers_contrast_monotonically(make):
    x = make()
    contrasts = [luminance(D.degrade(x, haze=lv, seed=4)[0]).std().item() for lv in range(0, 151, 25)]
    assert all(a > b for a, b in zip(contrasts, contrasts[1:])), contrasts
    assert contrasts[-1] < 0.3 * contrasts[0]


def test_haze_with_depth_map_is_scale_free():
    x = photo("coffee", 100, 100, 40)
    depth = torch.linspace(1, 5, 40)[None, :].expand(40, 40)
    y1, _ = D.degrade(x, haze=100, depth=depth, seed=1)
    y2, _ = D.degrade(x, haze=100, depth=depth * 30, seed=1)
    assert torch.allclose(y1, y2, atol=1e-6)
    assert (y1[:, :, 0] - x[:, :, 0]).abs().mean() < (y1[:, :, -1] - x[:, :, -1]).abs().mean()  # far = hazier
    flat, p = D.degrade(torch.zeros(3, 40, 40), haze=100, airlight=1.0, depth=torch.ones(40, 40), seed=1)
    assert torch.allclose(1 - flat, torch.full_like(flat, math.exp(-D.haze_beta(100))), atol=1e-6)
    with pytest.raises(InterIRError):
        D.degrade(x, haze=100, depth=-depth)


# ----------------------------------------------------------------------------------------------- rain


@pytest.mark.parametrize("make", PHOTOS)
def test_rain_adds_streak_energy_monotonically(make):
    x = make()
    energy, covered = [], []
    for lv in (0, 30, 75, 150, 225, 300):
        y, _ = D.degrade(x, rain=lv, seed=21)
        r = y - x
        energy.append((r ** 2).mean().item())
        covered.append((r.abs() > 2 / 255).float().mean().item())
    assert energy[0] == 0 and covered[0] == 0
    assert all(a < b for a, b in zip(energy, energy[1:])), energy
    assert all(a < b for a, b in zip(covered, covered[1:])), covered
    assert covered[-1] > 0.15  # torrential


@pytest.mark.parametrize("angle", [-45.0, -30.0, 0.0, 15.0, 40.0])
def test_rain_streaks_follow_the_angle(angle):
    # The structure tensor of the (slightly smoothed) streak layer: gradients are perpendicular to streaks.
    y, p = D.degrade(torch.zeros(3, 128, 128), rain=300, angle=angle, length=25, seed=3)
    s = F.avg_pool2d(y[None, :1].double(), 5, 1)[0, 0]
    gy, gx = torch.gradient(s)
    phi = 0.5 * math.degrees(math.atan2(2 * (gx * gy).sum().item(), ((gx ** 2).sum() - (gy ** 2).sum()).item()))
    # streak direction (dx, dy) = (sin θ, cos θ) → gradient direction at −θ (mod 180°)
    assert abs((phi + angle + 90) % 180 - 90) < 5
    assert p["angle"] == angle and p["length"] == 25


def test_rain_parameters_are_drawn_in_spec_ranges():
    ps = D.degrade(torch.zeros(16, 3, 8, 8), rain=100, seed=0)[1]
    angles, lengths = [p["angle"] for p in ps], [p["length"] for p in ps]
    assert all(-45 <= a <= 45 for a in angles) and max(angles) - min(angles) > 30
    assert all(10 <= n <= 30 for n in lengths) and len(set(lengths)) > 3


@pytest.mark.parametrize("length,angle", [(10, 0.0), (21, 37.0), (30, -45.0)])
def test_line_kernel_has_the_requested_length_and_valid_correlation_matches_conv2d(length, angle):
    k = D.line_kernel(length, angle)
    assert k.max().item() == pytest.approx(1.0)
    assert k.sum().item() == pytest.approx(length, rel=0.12)  # a line of unit peak: sum ≈ length
    assert torch.equal(k, k.flip(0, 1))  # symmetric: correlation = convolution
    x = torch.rand(50, 61, dtype=torch.float64, generator=torch.Generator().manual_seed(length))
    ref = F.conv2d(x[None, None], k[None, None])[0, 0]
    assert torch.allclose(D.correlate_valid(x, k), ref, atol=1e-12)


# ------------------------------------------------------------------------------- combos and seeding


def test_level_zero_is_bit_identical():
    x = photo("rocket", 100, 250, 40)
    y, p = D.degrade(x, seed=1)
    assert torch.equal(y, x)
    assert p["mean_transmission"] == 1.0


def test_deterministic_under_a_seed():
    x = photo("astronaut", 0, 100, 64)
    a, pa = D.degrade(x, haze=60, rain=120, noise=15, seed=123)
    b, pb = D.degrade(x, haze=60, rain=120, noise=15, seed=123)
    c, _ = D.degrade(x, haze=60, rain=120, noise=15, seed=124)
    assert torch.equal(a, b) and pa == pb
    assert not torch.equal(a, c)


def test_golden_bytes_pin_the_generator_version():
    # If this fails, the generator's output changed: bump GENERATOR_VERSION and update the digest.
    ramp = torch.linspace(0, 1, 32)[:, None] * torch.linspace(0.2, 0.9, 48)[None, :]
    x = torch.stack([ramp, ramp.flip(0), 1 - ramp])
    y, p = D.degrade(x, haze=80, rain=150, noise=20, seed=1234)
    assert D.GENERATOR_VERSION == 1 and p["version"] == 1
    assert hashlib.sha256(y.numpy().tobytes()).hexdigest() == (
        "688376677a603ce0c7190b239df38acf6c91db42d5cba8eeae6b8938a94b256a")


def test_batch_samples_regenerate_alone_from_their_recorded_seed():
    x = torch.stack([photo("coffee", 0, 0, 48), photo("chelsea", 0, 0, 48), photo("rocket", 0, 0, 48)])
    levels = dict(haze=[0.0, 90.0, 30.0], rain=[200.0, 0.0, 50.0], noise=[10.0, 25.0, 0.0])
    y, ps = D.degrade(x, **levels, seed=77)
    assert len({p["seed"] for p in ps}) == 3 and ps[0]["seed"] == 77
    for i, p in enumerate(ps):
        assert (p["haze"], p["rain"], p["noise"]) == (levels["haze"][i], levels["rain"][i], levels["noise"][i])
        yi, pi = D.degrade(x[i], haze=p["haze"], rain=p["rain"], noise=p["noise"], seed=p["seed"])
        assert torch.equal(yi, y[i]) and pi == p
        # the recorded airlight/angle/length reproduce it too when passed explicitly
        yo, _ = D.degrade(x[i], haze=p["haze"], rain=p["rain"], noise=p["noise"], seed=p["seed"],
                          airlight=p["airlight"], angle=p["angle"], length=p["length"])
        assert torch.equal(yo, y[i])


def test_each_degradation_keeps_its_own_random_stream():
    # Rain streaks at a seed do not depend on whether noise is present (separate generators).
    x = torch.full((3, 48, 48), 0.3)
    r, _ = D.degrade(x, rain=200, seed=8)
    rn, _ = D.degrade(x, rain=200, noise=1e-9, seed=8)
    assert torch.allclose(r, rn, atol=1e-6)


def test_seed_from_generator_or_global_state():
    x = torch.rand(2, 3, 16, 16)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a, pa = D.degrade(x, noise=20, generator=g1)
    b, pb = D.degrade(x, noise=20, generator=g2)
    assert torch.equal(a, b) and pa[0]["seed"] != pa[1]["seed"]
    torch.manual_seed(0)
    c, _ = D.degrade(x, noise=20)
    torch.manual_seed(0)
    d, _ = D.degrade(x, noise=20)
    assert torch.equal(c, d)


def test_combinations_and_sample_levels():
    assert D.COMBINATIONS == ("H+R+N", "H+R", "H+N", "R+N", "H", "R", "N")
    assert D.parse_combo("nhr") == "H+R+N" and D.parse_combo("N+H") == "H+N"
    with pytest.raises(InterIRError):
        D.parse_combo("H+X")
    g = torch.Generator().manual_seed(0)
    for combo in D.COMBINATIONS:
        draws = [D.sample_levels(combo, g) for _ in range(200)]
        for kind, letter in (("haze", "H"), ("rain", "R"), ("noise", "N")):
            vals = np.array([d[kind] for d in draws])
            if letter in combo:
                assert vals.min() >= 0 and vals.max() <= D.LEVEL_MAX[kind]
                assert vals.mean() == pytest.approx(D.LEVEL_MAX[kind] / 2, rel=0.15)  # uniform
            else:
                assert (vals == 0).all()
        assert D.combo_of(draws[0]) == combo
    assert D.sample_levels("H", 3) == D.sample_levels("H", 3)


def test_degrade_combo_records_the_combination():
    x = photo("coffee", 0, 0, 32)
    y, p = D.degrade_combo(x, "r+n", seed=4)
    assert p["combo"] == "R+N" and p["haze"] == 0 and p["rain"] > 0 and p["noise"] > 0
    assert torch.equal(y, D.degrade_combo(x, "R+N", seed=4)[0])


def test_dtypes_shapes_and_bad_input():
    x = torch.rand(2, 3, 20, 24, dtype=torch.float64)
    y, ps = D.degrade(x, haze=50, rain=50, noise=5, seed=0)
    assert y.dtype == torch.float64 and y.shape == x.shape and len(ps) == 2
    h, _ = D.degrade(x[0].half(), noise=5, seed=0)
    assert h.dtype == torch.float16
    with pytest.raises(InterIRError):
        D.degrade(x, noise=-1)
    with pytest.raises(InterIRError):
        D.degrade((x * 255).to(torch.uint8), noise=5)
    with pytest.raises(InterIRError):
        D.degrade(x, noise=[1.0, 2.0, 3.0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_gives_the_same_bytes_as_cpu():
    x = torch.stack([photo("coffee", 0, 0, 64), photo("astronaut", 0, 0, 64)])
    cpu, pc = D.degrade(x, haze=[40, 150], rain=[300, 20], noise=[50, 5], seed=99)
    gpu, pg = D.degrade(x.cuda(), haze=[40, 150], rain=[300, 20], noise=[50, 5], seed=99)
    assert gpu.is_cuda and pc == pg
    assert torch.equal(gpu.cpu(), cpu)


@pytest.mark.parametrize("shape", [(3, 1, 1), (3, 5, 300), (1, 9, 9), (4, 3, 17, 2)])
def test_any_image_size_and_channel_count(shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    y, _ = D.degrade(x, haze=100, rain=300, noise=10, seed=0)
    assert y.shape == x.shape and torch.isfinite(y).all() and 0 <= y.min() and y.max() <= 1
    assert not torch.equal(y, x)
