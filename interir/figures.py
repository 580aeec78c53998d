"""Figures drawn with Pillow only (no matplotlib): images, labelled grids, colour maps, heat maps,
bar charts and scatter plots. Used by `interir explain` and reusable by `interir demo`.

    from interir import figures as fig
    panel = fig.grid([fig.caption(fig.to_pil(img), "restored") for img in images], ncols=4)
    fig.bar_chart([0.01, 0.012], ["RESM 1", "RESM 2"], title="step sizes η").save("eta.png")

Everything returns a PIL RGB image; nothing is written to disk here (save with
interir.data.imageio.write_image for an atomic write).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

# Colour-map anchors (evenly spaced in [0, 1]); values in between are linearly interpolated.
COLORMAPS: dict[str, np.ndarray] = {
    "viridis": np.array([(68, 1, 84), (72, 40, 120), (62, 74, 137), (49, 104, 142), (38, 130, 142),
                         (31, 158, 137), (53, 183, 121), (109, 205, 89), (253, 231, 37)], np.float64),
    "magma": np.array([(0, 0, 4), (28, 16, 68), (79, 18, 123), (129, 37, 129), (181, 54, 122),
                       (229, 80, 100), (251, 135, 97), (254, 194, 135), (252, 253, 191)], np.float64),
    "coolwarm": np.array([(59, 76, 192), (98, 130, 234), (141, 176, 254), (184, 208, 249), (221, 221, 221),
                          (245, 196, 173), (244, 154, 123), (222, 96, 77), (180, 4, 38)], np.float64),
    "gray": np.array([(0, 0, 0), (255, 255, 255)], np.float64),
}

# Ten distinct categorical colours (matplotlib's tab10), for legends and scatter plots.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
GRID_INK = (225, 225, 225)


# ------------------------------------------------------------------------------------------- basics


@lru_cache(maxsize=None)
def font(size: int = 14) -> ImageFont.ImageFont:
    """Pillow's bundled font at `size` pixels (its fixed-size bitmap font on old Pillow versions).

    It covers Latin text only (no Greek letters, ×, −, Δ): keep labels ASCII ("eta", "3x3", "|A-1|").
    """
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def text_size(text: str, fnt: ImageFont.ImageFont) -> tuple[int, int]:
    """(width, height) of `text` (possibly multi-line) in `fnt`."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, top, right, bottom = probe.multiline_textbbox((0, 0), text, font=fnt, spacing=2)
    return right - min(left, 0), bottom - min(top, 0)


def to_pil(img, mode: str | None = None) -> Image.Image:
    """C×H×W (C = 1 or 3) or H×W float tensor/array in [0, 1], or a uint8 array, → PIL RGB (or L) image."""
    if isinstance(img, Image.Image):
        return img.convert(mode) if mode else img
    t = torch.as_tensor(np.asarray(img)) if not isinstance(img, torch.Tensor) else img.detach().cpu()
    if t.dtype == torch.uint8:
        arr = t.numpy()
        if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
            arr = arr.transpose(1, 2, 0)
    else:
        t = t.float()
        if t.dim() == 3:
            t = t.permute(1, 2, 0)
        arr = (t.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    out = Image.fromarray(arr)
    return out.convert(mode or "RGB")


def fit(img: Image.Image, max_side: int, resample=Image.Resampling.LANCZOS) -> Image.Image:
    """`img` scaled so that its longer side is `max_side` (down or up, aspect ratio kept)."""
    w, h = img.size
    s = max_side / max(w, h)
    if abs(s - 1) < 1e-9:
        return img
    return img.resize((max(1, round(w * s)), max(1, round(h * s))), resample)


def apply_colormap(values, cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None
                   ) -> Image.Image:
    """H×W values → PIL RGB image coloured by `cmap` over [vmin, vmax] (default: the values' range)."""
    a = np.asarray(values.detach().cpu().double() if isinstance(values, torch.Tensor) else values, np.float64)
    if a.ndim != 2:
        raise ValueError(f"apply_colormap expects a 2-D array, got shape {a.shape}")
    lo = float(np.nanmin(a)) if vmin is None else vmin
    hi = float(np.nanmax(a)) if vmax is None else vmax
    t = np.clip((a - lo) / (hi - lo), 0, 1) if hi > lo else np.full_like(a, 0.5)
    return Image.fromarray(_lookup(t, cmap))


def _lookup(t: np.ndarray, cmap: str) -> np.ndarray:
    """Values in [0, 1] → uint8 RGB via the colour map's anchors."""
    anchors = COLORMAPS[cmap]
    pos = np.linspace(0, 1, len(anchors))
    rgb = np.stack([np.interp(t, pos, anchors[:, c]) for c in range(3)], -1)
    return np.round(rgb).clip(0, 255).astype(np.uint8)


def color_of(value: float, cmap: str = "viridis", vmin: float = 0.0, vmax: float = 1.0) -> tuple[int, int, int]:
    t = 0.5 if vmax <= vmin else min(1.0, max(0.0, (value - vmin) / (vmax - vmin)))
    return tuple(int(c) for c in _lookup(np.array([t]), cmap)[0])


def _ink_on(rgb: Sequence[int]) -> tuple[int, int, int]:
    """Black or white text, whichever reads better on `rgb`."""
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if lum > 140 else (255, 255, 255)


# ------------------------------------------------------------------------------------------- layout


def caption(img: Image.Image, text: str, size: int = 13, below: bool = False, pad: int = 3) -> Image.Image:
    """`img` with a strip of (possibly multi-line) text above it (or below), centred."""
    img = img.convert("RGB")
    fnt = font(size)
    tw, th = text_size(text, fnt)
    w = max(img.width, tw + 2 * pad)
    out = Image.new("RGB", (w, img.height + th + 2 * pad), BACKGROUND)
    ty = img.height + pad if below else pad
    out.paste(img, ((w - img.width) // 2, 0 if below else th + 2 * pad))
    ImageDraw.Draw(out).multiline_text(((w - tw) // 2, ty), text, fill=INK, font=fnt, spacing=2, align="center")
    return out


def title(img: Image.Image, text: str, size: int = 18) -> Image.Image:
    """`img` with a left-aligned heading above it."""
    fnt = font(size)
    tw, th = text_size(text, fnt)
    out = Image.new("RGB", (max(img.width, tw + 16), img.height + th + 14), BACKGROUND)
    ImageDraw.Draw(out).multiline_text((8, 6), text, fill=INK, font=fnt, spacing=2)
    out.paste(img.convert("RGB"), (0, th + 14))
    return out


def grid(images: Sequence[Image.Image], ncols: int | None = None, pad: int = 6,
         background=BACKGROUND) -> Image.Image:
    """Images laid out in rows of `ncols` (default: one row) as a table: each column as wide as its widest
    image, each row as tall as its tallest, every image centred in its cell."""
    images = [im.convert("RGB") for im in images]
    if not images:
        raise ValueError("grid needs at least one image")
    ncols = max(1, min(ncols or len(images), len(images)))
    nrows = math.ceil(len(images) / ncols)
    widths = [max(im.width for im in images[c::ncols]) for c in range(ncols)]
    heights = [max(im.height for im in images[r * ncols:(r + 1) * ncols]) for r in range(nrows)]
    out = Image.new("RGB", (sum(widths) + (ncols + 1) * pad, sum(heights) + (nrows + 1) * pad), background)
    for i, im in enumerate(images):
        r, c = divmod(i, ncols)
        x0 = pad + sum(widths[:c]) + c * pad
        y0 = pad + sum(heights[:r]) + r * pad
        out.paste(im, (x0 + (widths[c] - im.width) // 2, y0 + (heights[r] - im.height) // 2))
    return out


def hstack(images: Sequence[Image.Image], pad: int = 6) -> Image.Image:
    return grid(images, ncols=len(images), pad=pad)


def vstack(images: Sequence[Image.Image], pad: int = 6) -> Image.Image:
    return grid(images, ncols=1, pad=pad)


def colorbar(cmap: str, vmin: float, vmax: float, length: int = 160, thickness: int = 12,
             label: str = "", fmt: str = "{:.2f}") -> Image.Image:
    """A horizontal colour bar with its end values (and an optional label) underneath."""
    bar = Image.fromarray(_lookup(np.tile(np.linspace(0, 1, length), (thickness, 1)), cmap))
    fnt = font(11)
    lo, hi = fmt.format(vmin), fmt.format(vmax)
    _, th = text_size(lo, fnt)
    out = Image.new("RGB", (length + 2, thickness + th + 6), BACKGROUND)
    out.paste(bar, (1, 0))
    d = ImageDraw.Draw(out)
    d.rectangle((0, 0, length + 1, thickness), outline=INK)
    d.text((1, thickness + 3), lo, fill=INK, font=fnt)
    d.text((length + 1 - text_size(hi, fnt)[0], thickness + 3), hi, fill=INK, font=fnt)
    if label:
        d.text(((length - text_size(label, fnt)[0]) // 2, thickness + 3), label, fill=INK, font=fnt)
    return out


# ------------------------------------------------------------------------------------------- charts


def heatmap(matrix, cell: int = 36, cmap: str = "coolwarm", vmin: float | None = None,
            vmax: float | None = None, fmt: str | None = "{:.2f}") -> Image.Image:
    """A small k×m matrix drawn as coloured cells, each annotated with its value (fmt=None: no numbers)."""
    a = np.asarray(matrix.detach().cpu().double() if isinstance(matrix, torch.Tensor) else matrix, np.float64)
    if a.ndim != 2:
        raise ValueError(f"heatmap expects a 2-D matrix, got shape {a.shape}")
    lo = float(a.min()) if vmin is None else vmin
    hi = float(a.max()) if vmax is None else vmax
    img = apply_colormap(a, cmap, lo, hi).resize((a.shape[1] * cell, a.shape[0] * cell), Image.Resampling.NEAREST)
    d = ImageDraw.Draw(img)
    fnt = font(max(9, cell // 3))
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            x0, y0 = j * cell, i * cell
            d.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), outline=(255, 255, 255))
            if fmt:
                s = fmt.format(a[i, j])
                tw, th = text_size(s, fnt)
                d.text((x0 + (cell - tw) // 2, y0 + (cell - th) // 2), s, font=fnt,
                       fill=_ink_on(img.getpixel((x0 + cell // 2, y0 + 2))))
    return img


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, v = [], start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    if ticks[-1] < hi:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def _fmt_tick(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.1e}"
    return f"{v:.4g}"


def bar_chart(values: Sequence[float], labels: Sequence[str], title: str = "", ylabel: str = "",
              size: tuple[int, int] = (640, 360), color: Sequence[int] = PALETTE[0],
              value_fmt: str = "{:.4g}", reference: float | None = None, reference_label: str = "") -> Image.Image:
    """A vertical bar chart with a y axis, tick labels, the value above each bar and, optionally, a dashed
    horizontal reference line (e.g. an initial value)."""
    values = [float(v) for v in values]
    if len(values) != len(labels) or not values:
        raise ValueError("bar_chart needs as many labels as values, and at least one value")
    w, h = size
    img = Image.new("RGB", size, BACKGROUND)
    d = ImageDraw.Draw(img)
    fnt, small = font(14), font(11)
    lo = min(0.0, *values, *([reference] if reference is not None else []))
    hi = max(0.0, *values, *([reference] if reference is not None else []))
    ticks = _nice_ticks(lo, hi)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    tick_w = max(text_size(_fmt_tick(t), small)[0] for t in ticks)
    left = 14 + tick_w + (18 if ylabel else 0)
    top = 12 + (text_size(title, fnt)[1] + 10 if title else 0)
    label_h = max(text_size(s, small)[1] for s in labels)
    bottom, right = h - label_h - 14, w - 12

    def y_of(v):
        return bottom - (v - lo) / (hi - lo) * (bottom - top)

    if title:
        d.text(((w - text_size(title, fnt)[0]) // 2, 8), title, fill=INK, font=fnt)
    if ylabel:
        lab = Image.new("RGB", text_size(ylabel, small), BACKGROUND)
        ImageDraw.Draw(lab).text((0, 0), ylabel, fill=INK, font=small)
        lab = lab.rotate(90, expand=True)
        img.paste(lab, (4, int((top + bottom - lab.height) / 2)))
    for t in ticks:
        y = y_of(t)
        d.line((left, y, right, y), fill=GRID_INK)
        s = _fmt_tick(t)
        tw, th = text_size(s, small)
        d.text((left - 6 - tw, y - th / 2 - 1), s, fill=INK, font=small)
    d.line((left, top, left, bottom), fill=INK)
    d.line((left, y_of(0), right, y_of(0)), fill=INK)
    n = len(values)
    slot = (right - left) / n
    bw = max(2.0, slot * 0.7)
    for i, (v, s) in enumerate(zip(values, labels)):
        cx = left + slot * (i + 0.5)
        y0, y1 = sorted((y_of(0), y_of(v)))
        d.rectangle((cx - bw / 2, y0, cx + bw / 2, max(y1, y0 + 1)), fill=tuple(color), outline=INK)
        vs = value_fmt.format(v)
        tw, th = text_size(vs, small)
        if tw < slot + 8:
            ty = y0 - th - 4 if v >= 0 else y1 + 2
            d.text((cx - tw / 2, ty), vs, fill=INK, font=small)
        tw, _ = text_size(s, small)
        d.text((cx - tw / 2, bottom + 5), s, fill=INK, font=small)
    if reference is not None:
        y = y_of(reference)
        for x in range(int(left), int(right), 10):
            d.line((x, y, min(x + 5, right), y), fill=(200, 30, 30), width=1)
        if reference_label:
            tw, th = text_size(reference_label, small)
            d.rectangle((right - tw - 6, y - th - 6, right - 1, y - 2), fill=BACKGROUND)
            d.text((right - tw - 3, y - th - 5), reference_label, fill=(200, 30, 30), font=small)
    return img


def scatter(points, categories: Sequence[str], order: Sequence[str] | None = None, title: str = "",
            size: tuple[int, int] = (720, 560), colors: Sequence[Sequence[int]] = PALETTE,
            radius: int = 4) -> Image.Image:
    """2-D points coloured by category, with a legend (category, colour, count) on the right. Axes carry no
    ticks: this is for embeddings (t-SNE) whose coordinates have no units."""
    p = np.asarray(points.detach().cpu() if isinstance(points, torch.Tensor) else points, np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) != len(categories):
        raise ValueError("scatter expects n×2 points and n categories")
    order = list(dict.fromkeys(order)) if order is not None else []
    order += [c for c in dict.fromkeys(categories) if c not in order]
    color = {c: tuple(colors[i % len(colors)]) for i, c in enumerate(order)}
    w, h = size
    img = Image.new("RGB", size, BACKGROUND)
    d = ImageDraw.Draw(img)
    fnt, small = font(15), font(13)
    counts = {c: sum(1 for x in categories if x == c) for c in order}
    entries = [f"{c} ({counts[c]})" for c in order if counts[c]]
    legend_w = max(text_size(e, small)[0] for e in entries) + 36 if entries else 0
    top = 12 + (text_size(title, fnt)[1] + 10 if title else 0)
    left, right, bottom = 12, w - legend_w - 20, h - 12
    if title:
        d.text(((w - text_size(title, fnt)[0]) // 2, 8), title, fill=INK, font=fnt)
    d.rectangle((left, top, right, bottom), outline=(160, 160, 160))
    if len(p):
        lo, hi = p.min(0), p.max(0)
        span = np.where(hi > lo, hi - lo, 1.0)
        m = radius + 6
        xy = (p - lo) / span
        xs = left + m + xy[:, 0] * (right - left - 2 * m)
        ys = bottom - m - xy[:, 1] * (bottom - top - 2 * m)
        for x, y, c in zip(xs, ys, categories):
            d.ellipse((x - radius, y - radius, x + radius, y + radius), fill=color[c], outline=(40, 40, 40))
    ly = top + 4
    for c in order:
        if not counts[c]:
            continue
        d.rectangle((right + 16, ly + 2, right + 28, ly + 14), fill=color[c], outline=(40, 40, 40))
        d.text((right + 34, ly), f"{c} ({counts[c]})", fill=INK, font=small)
        ly += max(18, text_size(c, small)[1] + 6)
    return img


__all__ = ["COLORMAPS", "PALETTE", "font", "text_size", "to_pil", "fit", "apply_colormap", "color_of",
           "caption", "title", "grid", "hstack", "vstack", "colorbar", "heatmap", "bar_chart", "scatter"]
