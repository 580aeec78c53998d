"""Tiled inference with overlap and smooth blending, so memory stays bounded on large images.

    out = restore_tiled(model, image, tile=1024, overlap=32)      # image, out: 1×3×H×W in [0, 1]

How the image is cut (each axis independently; the tiles form a grid):
  * the image is first padded at the bottom/right to a multiple of the model's `multiple` (InterIR: 4,
    its PixelUnshuffle factor), exactly as the model pads an untiled input (reflect, or replicate when the
    image is too small to reflect), so every tile starts on the model's 4×4 cell grid;
  * tiles are `tile`×`tile` pixels (smaller only where the image is), their starts are multiples of
    `multiple`, spread evenly so that neighbouring tiles share at least 3·`overlap` pixels;
  * each tile's output is weighted by a separable profile that is 0 on the `overlap` pixels next to an
    inner tile edge (context only: those outputs lack neighbours the untiled network would have seen),
    rises as a raised cosine over the next `overlap` pixels, and is 1 elsewhere, including along the image
    border. Profiles are normalised per axis so that the weights of all tiles sum to exactly 1 at every
    pixel: the result is a convex combination of tile outputs and no pixel depends on the blending of
    a tile edge.

Consequences. For a network whose output at a pixel depends only on inputs within a radius r (a stack of
convolutions), tiling with overlap ≥ r reproduces the untiled output up to float round-off. InterIR is
not such a network: the initial Kronecker factors P1 = nf(Dd·Ddᵀ) mix whole rows and columns, NAFNet's
simplified channel attention pools the whole map and the explainable conv pools its mask over the whole
map, so a tiled InterIR output is an approximation of the untiled one (the cross-fade hides the seams);
use a tile as large as memory allows.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from interir import cpu_malloc
from interir.model.inputs import pad_to_multiple

__all__ = ["restore_tiled", "tile_starts", "blend_profile", "axis_weights", "model_multiple", "pad_to_multiple"]


def model_multiple(model) -> int:
    """The multiple a network of the zoo pads its input to (its `padding_multiple`: InterIR 4, DGUNet 8), or
    that of a wrapper that declares one (interir.compiled.CompiledNetwork); 1 for any other callable."""
    return int(getattr(model, "padding_multiple", 1))


def tile_starts(length: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Start offsets of the tiles along one axis of `length` pixels (a multiple of `multiple`).

    The first tile starts at 0, the last ends at `length`, all starts are multiples of `multiple` and
    consecutive tiles share at least 3·overlap pixels. One tile (start 0) when length ≤ tile.
    """
    if length <= tile:
        return [0]
    if tile % multiple or length % multiple:
        raise ValueError(f"tile ({tile}) and length ({length}) must be multiples of {multiple}")
    max_step = (tile - 3 * overlap) // multiple  # in units of `multiple`
    if max_step < 1:
        raise ValueError(f"tile {tile} is too small for overlap {overlap}: it must exceed 3×overlap "
                         f"(+{multiple})")
    span = (length - tile) // multiple  # distance from first to last start, in units
    n = math.ceil(span / max_step) + 1
    return [round(i * span / (n - 1)) * multiple for i in range(n)]


def blend_profile(size: int, overlap: int, lower_inner: bool, upper_inner: bool,
                  dtype: torch.dtype = torch.float64) -> Tensor:
    """1-D weight of one tile: 0 on `overlap` pixels at an inner edge, raised-cosine ramp over the next
    `overlap`, 1 elsewhere (edges on the image border are not inner and keep weight 1)."""
    w = torch.ones(size, dtype=dtype)
    if overlap <= 0:
        return w
    k = torch.arange(1, overlap + 1, dtype=dtype)
    ramp = 0.5 - 0.5 * torch.cos(math.pi * k / (overlap + 1))  # strictly inside (0, 1), increasing
    ramp = torch.cat([torch.zeros(overlap, dtype=dtype), ramp])[:size]
    n = ramp.numel()
    if lower_inner:
        w[:n] = torch.minimum(w[:n], ramp)
    if upper_inner:
        w[size - n:] = torch.minimum(w[size - n:], ramp.flip(0))
    return w


def axis_weights(length: int, starts: list[int], tile: int, overlap: int) -> list[Tensor]:
    """Per-tile 1-D profiles along one axis, normalised so that they sum to 1 at every position."""
    sizes = [min(tile, length - s) for s in starts]
    profiles = [blend_profile(sz, overlap, i > 0, i < len(starts) - 1) for i, sz in enumerate(sizes)]
    total = torch.zeros(length, dtype=torch.float64)
    for s, p in zip(starts, profiles):
        total[s:s + p.numel()] += p
    if bool((total <= 0).any()):  # cannot happen with tile_starts' spacing; guard against misuse
        raise ValueError("tiles leave pixels without weight; increase the tile size or lower the overlap")
    return [p / total[s:s + p.numel()] for s, p in zip(starts, profiles)]


@torch.no_grad()
def restore_tiled(model: Callable[[Tensor], Tensor], image: Tensor, tile: int = 1024, overlap: int = 32,
                  *, multiple: int | None = None, device: torch.device | str | None = None,
                  progress: bool = False, desc: str = "tiles") -> Tensor:
    """Run `model` on `image` (1×C×H×W, float) tile by tile and blend the tiles; returns 1×C×H×W on
    image's device and dtype.

    tile: tile side in pixels (a multiple of `multiple`); 0 or a tile not smaller than the image = one
        forward over the whole image. overlap: pixels of context each tile discards at its inner edges
        (≥ the model's receptive-field radius for an exact result with a local model); neighbouring
        tiles are cross-faded over another `overlap` pixels, so they share 3·overlap pixels.
    multiple: the model's padding multiple (default: model_multiple(model)).
    device: where the model runs (default: the image's device); tiles are moved there one at a time and
        the blended result is accumulated on the image's device, so device memory holds one tile.
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"restore_tiled expects a 1×C×H×W tensor, got shape {tuple(image.shape)}")
    if tile < 0 or overlap < 0:
        raise ValueError(f"tile and overlap must be non-negative (got tile={tile}, overlap={overlap})")
    mult = model_multiple(model) if multiple is None else max(1, int(multiple))
    device = image.device if device is None else torch.device(device)
    h, w = image.shape[-2:]
    if tile == 0 or (h <= tile and w <= tile):
        out = model(image.to(device)).to(image.device, image.dtype)
        cpu_malloc.release_free_memory()
        return out
    if tile % mult:
        raise ValueError(f"tile size {tile} must be a multiple of {mult} for this model")
    x = pad_to_multiple(image, mult)
    hp, wp = x.shape[-2:]
    ys, xs = tile_starts(hp, tile, overlap, mult), tile_starts(wp, tile, overlap, mult)
    wy, wx = axis_weights(hp, ys, tile, overlap), axis_weights(wp, xs, tile, overlap)
    acc_dtype = torch.promote_types(image.dtype, torch.float32)
    out = torch.zeros(x.shape, dtype=acc_dtype, device=image.device)
    from interir.progress import progress as show_progress

    bar = show_progress(total=len(ys) * len(xs), desc=desc, unit="tile", leave=False,
                        enabled=progress and len(ys) * len(xs) > 1)
    try:
        for y0, py in zip(ys, wy):
            for x0, px in zip(xs, wx):
                th, tw = py.numel(), px.numel()
                patch = x[..., y0:y0 + th, x0:x0 + tw].to(device)
                y = model(patch).to(image.device, acc_dtype)
                if y.shape != patch.shape:
                    raise ValueError(f"the model returned shape {tuple(y.shape)} for a tile of shape "
                                     f"{tuple(patch.shape)}")
                weight = (py[:, None] * px[None, :]).to(acc_dtype)
                out[..., y0:y0 + th, x0:x0 + tw] += y * weight
                del patch, y, weight
                cpu_malloc.release_free_memory()  # the tile's feature maps, back before the next tile
                bar.update(1)
    finally:
        bar.close()
    return out[..., :h, :w].to(image.dtype)
