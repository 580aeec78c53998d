"""PSNR and SSIM exactly as BasicSR's `calculate_psnr` / `calculate_ssim` compute them (docs/model.md).

    psnr(restored, clean, crop_border=0, test_y_channel=False) -> float (dB; inf for identical images)
    ssim(restored, clean, crop_border=0, test_y_channel=False) -> float

Inputs, one image each (both of the same kind and shape):
- numpy arrays on the 0–255 scale, H×W×C or H×W (`input_order="CHW"` for C×H×W), any dtype; used as they
  are (BasicSR's numpy convention: no rounding).
- torch tensors, C×H×W or 1×C×H×W (or H×W): floating tensors are taken as [0, 1] and turned into uint8
  as BasicSR's tensor2img does (clamp to [0, 1], ×255, round half to even); integer tensors are taken as
  0–255 values. A batch with B > 1 is an error: loop over it.

PSNR: mean squared error in float64 on 0–255, 10·log10(255²/mse). SSIM: per channel, 11×11 Gaussian
window (σ = 1.5), c1 = (0.01·255)², c2 = (0.03·255)², valid region only, mean of the map, then the mean over
channels. Y channel: BT.601 Y = 16 + 65.481R + 128.553G + 24.966B (R, G, B in [0, 1]) with BasicSR's
float32 round trip (`to_y_channel`). crop_border removes that many pixels from every edge first.
"""
from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim", "rgb_to_y", "to_uint8_hwc", "gaussian_window"]


def to_uint8_hwc(img) -> np.ndarray:
    """One image → H×W×C numpy array on the 0–255 scale (see the module docstring for the conventions)."""
    if isinstance(img, torch.Tensor):
        t = img.detach().cpu()
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ValueError(f"psnr/ssim take one image, got a batch of {t.shape[0]}; loop over it")
            t = t[0]
        if t.dim() == 2:
            t = t[None]
        if t.dim() != 3:
            raise ValueError(f"expected an image tensor C×H×W, got shape {tuple(img.shape)}")
        if t.is_floating_point():
            # BasicSR tensor2img: float() → clamp(0, 1) → numpy → (x * 255.0).round() → uint8
            a = (t.float().clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round()
            return a.astype(np.uint8)
        return t.permute(1, 2, 0).numpy()
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise ValueError(f"expected an image array H×W×C or H×W, got shape {a.shape}")
    return a


def _prepare(img1, img2, crop_border: int, test_y_channel: bool, input_order: str):
    if input_order not in ("HWC", "CHW"):
        raise ValueError(f"input_order must be 'HWC' or 'CHW', got {input_order!r}")
    if isinstance(img1, torch.Tensor) != isinstance(img2, torch.Tensor):
        raise TypeError("psnr/ssim: pass two numpy arrays or two tensors, not one of each")
    if not isinstance(img1, torch.Tensor) and input_order == "CHW":
        img1, img2 = (np.asarray(x) for x in (img1, img2))
        img1, img2 = (x.transpose(1, 2, 0) if x.ndim == 3 else x for x in (img1, img2))
    a, b = to_uint8_hwc(img1), to_uint8_hwc(img2)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if crop_border < 0:
        raise ValueError("crop_border must be ≥ 0")
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border, ...]
        b = b[crop_border:-crop_border, crop_border:-crop_border, ...]
    if test_y_channel:
        a, b = rgb_to_y(a), rgb_to_y(b)
    return a.astype(np.float64), b.astype(np.float64)


def rgb_to_y(img):
    """BT.601 luma on the 0–255 scale, as BasicSR's to_y_channel (RGB order, docs/model.md, evaluation).

    numpy H×W×3 (0–255, any dtype) → H×W×1 float32, with BasicSR's float32 round trip; other channel
    counts pass through as float32 (like BasicSR). torch (…×3×H×W float in [0, 1]) → (…×1×H×W) in [0, 1]
    in the tensor's dtype (BasicSR's rgb2ycbcr_pt).
    """
    if isinstance(img, torch.Tensor):
        w = torch.tensor([65.481, 128.553, 24.966], dtype=img.dtype, device=img.device)
        y = (img.movedim(-3, -1) @ w)[..., None].movedim(-1, -3) + 16.0
        return y / 255.0
    x = np.asarray(img).astype(np.float32) / 255.0  # float32 in [0, 1]
    if x.ndim == 3 and x.shape[2] == 3:
        y = np.dot(x, [65.481, 128.553, 24.966]) + 16.0  # float64 in [16, 235]
        x = (y / 255.0).astype(np.float32)[..., None]  # bgr2ycbcr's _convert_output_type_range
    return x * np.float32(255.0)


def psnr(img1, img2, crop_border: int = 0, test_y_channel: bool = False, input_order: str = "HWC") -> float:
    """Peak signal-to-noise ratio in dB on the 0–255 scale (BasicSR calculate_psnr)."""
    a, b = _prepare(img1, img2, crop_border, test_y_channel, input_order)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(255.0 * 255.0 / mse))


SSIM_WINDOW = 11  # the side of SSIM's Gaussian window: the smallest image it scores


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = 1.5) -> torch.Tensor:
    """1-D normalised Gaussian (float64), as cv2.getGaussianKernel(size, sigma)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _filter_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable valid-region Gaussian filtering of N×1×H×W float64."""
    k = g.numel()
    x = F.conv2d(x, g.view(1, 1, k, 1))
    return F.conv2d(x, g.view(1, 1, 1, k))


def ssim(img1, img2, crop_border: int = 0, test_y_channel: bool = False, input_order: str = "HWC") -> float:
    """Structural similarity (BasicSR calculate_ssim): per-channel SSIM over the valid region, averaged."""
    a, b = _prepare(img1, img2, crop_border, test_y_channel, input_order)
    if a.shape[0] < SSIM_WINDOW or a.shape[1] < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}×{SSIM_WINDOW} after cropping, got "
                         f"{a.shape[0]}×{a.shape[1]}")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[:, None]  # C×1×H×W
    y = torch.from_numpy(np.ascontiguousarray(b.transpose(2, 0, 1)))[:, None]
    g = gaussian_window(SSIM_WINDOW, 1.5)
    mu1, mu2 = _filter_valid(x, g), _filter_valid(y, g)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 ** 2, mu2 ** 2, mu1 * mu2
    sigma1_sq = _filter_valid(x * x, g) - mu1_sq
    sigma2_sq = _filter_valid(y * y, g) - mu2_sq
    sigma12 = _filter_valid(x * y, g) - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
    return float(ssim_map.mean(dim=(1, 2, 3)).mean())
