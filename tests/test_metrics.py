"""interir.metrics: BasicSR-compatible PSNR/SSIM checked against scikit-image to 1e-6 (docs/model.md)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from interir.metrics import psnr, rgb_to_y, ssim

skdata = pytest.importorskip("skimage.data")
skm = pytest.importorskip("skimage.metrics")
skcolor = pytest.importorskip("skimage.color")
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
TOL = 1e-6


def sk_psnr(a, b):
    return skm.peak_signal_noise_ratio(np.asarray(a, np.float64), np.asarray(b, np.float64), data_range=255)


def sk_ssim(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return skm.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=255, channel_axis=-1 if a.ndim == 3 else None)


def jpeg(a: np.ndarray, quality: int = 30) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf)).copy()


def noisy(a: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(a + rng.normal(0, sigma, a.shape)), 0, 255).astype(np.uint8)


def opencv_photo(name: str) -> np.ndarray:
    from PIL import Image

    path = OPENCV_DATA / name
    if not path.is_file():
        pytest.skip(f"opencv-doc sample {path} not installed (apt-get install opencv-doc)")
    return np.asarray(Image.open(path).convert("RGB"))[100:190, 150:250].copy()


REAL = {  # name -> () -> (clean, distorted) uint8 crops of real photographs
    "astronaut-jpeg": lambda: (lambda a: (a, jpeg(a)))(skdata.astronaut()[60:156, 170:298]),
    "coffee-noise": lambda: (lambda a: (a, noisy(a, 12)))(skdata.coffee()[100:180, 200:301]),
    "camera-grey-noise": lambda: (lambda a: (a, noisy(a, 25, 1)))(skdata.camera()[200:290, 180:260]),
    "opencv-baboon-jpeg": lambda: (lambda a: (a, jpeg(a, 15)))(opencv_photo("baboon.jpg")),
}


def real_pair(name: str):
    return REAL[name]()


@pytest.mark.parametrize("shape", [(32, 32, 3), (37, 53, 3), (64, 48), (11, 11, 3), (40, 29, 1)])
def test_random_images_match_skimage(shape):
    rng = np.random.default_rng(sum(shape))
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, shape), 0, 255).astype(np.uint8)
    assert abs(psnr(a, b) - sk_psnr(a, b)) < TOL
    assert abs(ssim(a, b) - sk_ssim(a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a,
                                    b[..., 0] if b.ndim == 3 and b.shape[2] == 1 else b)) < TOL


def test_random_float_arrays_are_used_unrounded_like_basicsr():
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0, 255, (30, 41, 3)), rng.uniform(0, 255, (30, 41, 3))
    assert abs(psnr(a, b) - sk_psnr(a, b)) < TOL
    assert abs(ssim(a, b) - sk_ssim(a, b)) < TOL
    assert abs(psnr(a, b) - psnr(np.round(a), np.round(b))) > 1e-4  # numpy input is not rounded


@pytest.mark.parametrize("name", list(REAL))
def test_real_photographs_match_skimage(name):
    a, b = real_pair(name)
    p, s = psnr(a, b), ssim(a, b)
    assert 15 < p < 45 and 0.1 < s < 0.999
    assert abs(p - sk_psnr(a, b)) < TOL
    assert abs(s - sk_ssim(a, b)) < TOL


@pytest.mark.parametrize("border", [1, 4, 8])
def test_crop_border(border):
    a, b = real_pair("astronaut-jpeg")
    c = (slice(border, -border), slice(border, -border))
    assert abs(psnr(a, b, crop_border=border) - sk_psnr(a[c], b[c])) < TOL
    assert abs(ssim(a, b, crop_border=border) - sk_ssim(a[c], b[c])) < TOL
    assert psnr(a, b, crop_border=border) != psnr(a, b)


def test_y_channel_matches_skimage_on_bt601_luma():
    a, b = real_pair("coffee-noise")
    ya, yb = skcolor.rgb2ycbcr(a)[..., 0], skcolor.rgb2ycbcr(b)[..., 0]
    assert abs(psnr(a, b, test_y_channel=True) - sk_psnr(ya, yb)) < TOL
    assert abs(ssim(a, b, test_y_channel=True) - sk_ssim(ya, yb)) < TOL
    assert abs(psnr(a, b, test_y_channel=True, crop_border=3) - sk_psnr(ya[3:-3, 3:-3], yb[3:-3, 3:-3])) < TOL
    assert abs(psnr(a, b, test_y_channel=True) - psnr(a, b)) > 0.01


def test_rgb_to_y_values_and_basicsr_float32_round_trip():
    px = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    y = rgb_to_y(px)
    assert y.dtype == np.float32 and y.shape == (1, 5, 1)
    np.testing.assert_allclose(y[0, :, 0], [235.0, 16.0, 81.481, 144.553, 40.966], atol=2e-5)
    a = skdata.chelsea()[:40, :40]
    np.testing.assert_allclose(rgb_to_y(a)[..., 0], skcolor.rgb2ycbcr(a)[..., 0], atol=1e-4)
    # BasicSR keeps Y in float32 (÷255, astype float32, ×255): values are float32-representable
    ya = rgb_to_y(a)
    assert np.array_equal(ya, ya.astype(np.float32).astype(np.float64).astype(np.float32))
    t = torch.from_numpy(a).permute(2, 0, 1).double() / 255
    np.testing.assert_allclose(rgb_to_y(t)[0].numpy() * 255, ya[..., 0], atol=1e-4)
    assert rgb_to_y(t[None]).shape == (1, 1, 40, 40)


def test_tensors_are_rounded_to_uint8_like_tensor2img():
    a, b = real_pair("astronaut-jpeg")
    ta = torch.from_numpy(a).permute(2, 0, 1).float() / 255
    tb = torch.from_numpy(b).permute(2, 0, 1).float() / 255
    # a perturbation smaller than half a grey level, and values out of [0, 1], vanish in the rounding
    wobble = (torch.rand(ta.shape, generator=torch.Generator().manual_seed(0)) - 0.5) * (0.8 / 255)
    tb_w = tb + wobble
    tb_w[:, 0, 0] = torch.where(tb[:, 0, 0] == 0, -0.2, tb_w[:, 0, 0])
    tb_w[:, 0, 1] = torch.where(tb[:, 0, 1] == 1, 1.3, tb_w[:, 0, 1])
    for f, sk in ((psnr, sk_psnr), (ssim, sk_ssim)):
        assert f(ta, tb_w) == f(ta, tb) == f(a, b)
        assert f(ta[None], tb[None]) == f(a, b)
        assert abs(f(ta, tb) - sk(a, b)) < TOL
    unrounded = sk_psnr(ta.permute(1, 2, 0).numpy() * 255, tb_w.clamp(0, 1).permute(1, 2, 0).numpy() * 255)
    assert abs(psnr(ta, tb_w) - unrounded) > 1e-3
    assert psnr(ta, tb, test_y_channel=True) == psnr(a, b, test_y_channel=True)


def test_uint8_tensors_and_chw_arrays():
    a, b = real_pair("coffee-noise")
    ua, ub = torch.from_numpy(a).permute(2, 0, 1), torch.from_numpy(b).permute(2, 0, 1)
    assert psnr(ua, ub) == psnr(a, b) and ssim(ua, ub) == ssim(a, b)
    ca, cb = a.transpose(2, 0, 1), b.transpose(2, 0, 1)
    assert psnr(ca, cb, input_order="CHW") == psnr(a, b)
    assert ssim(ca, cb, input_order="CHW") == ssim(a, b)


def test_known_values_and_identity():
    a = np.full((16, 16, 3), 100, np.uint8)
    assert psnr(a, a + 1) == pytest.approx(10 * np.log10(255.0 ** 2), abs=1e-12)  # mse = 1: 48.1308 dB
    assert psnr(a, a) == float("inf")
    photo = skdata.astronaut()[:64, :64]
    assert ssim(photo, photo) == pytest.approx(1.0, abs=1e-12)
    assert ssim(photo, noisy(photo, 20)) < 0.9


def test_bad_inputs():
    a = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError):
        psnr(a, np.zeros((16, 17, 3), np.uint8))
    with pytest.raises(ValueError):
        psnr(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError):
        ssim(np.zeros((10, 30, 3)), np.zeros((10, 30, 3)))
    with pytest.raises(TypeError):
        psnr(a, torch.zeros(3, 16, 16))
