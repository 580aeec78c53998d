"""The ×8 geometric self-ensemble: restore the 8 flips/rotations of an image and average them back.

    out = self_ensemble(forward, image)       # image, out: B×C×H×W; forward: B×C×h×w → B×C×h×w

The 8 transforms are the symmetries of the square (the dihedral group D4): a left-right flip or not, then a
rotation by k·90° (k = 0…3) — identity, the two flips, the three rotations and the two transposes. Each
output is mapped back by the exact inverse (rotate by −k·90°, then undo the flip); all of them are pure
permutations of pixels, so mapping back loses nothing, and the 8 results are averaged (docs/evaluation.md).
Odd k swaps H and W: the network must accept the rotated shape (the networks of interir.model pad any size).
A network that is itself equivariant to these symmetries (a per-pixel one, say) gains nothing: its ensemble
equals its plain output up to float round-off.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

# (quarter turns k, left-right flip first); the identity comes first
TRANSFORMS: tuple[tuple[int, bool], ...] = tuple((k, flip) for flip in (False, True) for k in range(4))


def geometric_transform(x: Tensor, quarter_turns: int, flip: bool) -> Tensor:
    """x: …×H×W → the image flipped left-right (if `flip`), then rotated by quarter_turns·90°
    counter-clockwise: …×H×W for even quarter_turns, …×W×H for odd ones."""
    if flip:
        x = x.flip(-1)
    return torch.rot90(x, quarter_turns, dims=(-2, -1))


def inverse_geometric_transform(y: Tensor, quarter_turns: int, flip: bool) -> Tensor:
    """The exact inverse of geometric_transform(·, quarter_turns, flip): rotate back, then undo the flip."""
    y = torch.rot90(y, -quarter_turns, dims=(-2, -1))
    return y.flip(-1) if flip else y


def self_ensemble(forward: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Mean over the 8 TRANSFORMS t of t⁻¹(forward(t(x))). x: B×C×H×W; returns B×C×H×W in x's dtype
    (accumulated in at least float32). `forward` receives contiguous B×C×H×W or B×C×W×H tensors and must
    return a tensor of the shape it was given."""
    total = None
    for k, flip in TRANSFORMS:
        moved = geometric_transform(x, k, flip).contiguous()
        y = forward(moved)
        if y.shape != moved.shape:
            raise ValueError(f"self-ensemble: the model returned shape {tuple(y.shape)} for an input of shape "
                             f"{tuple(moved.shape)}")
        back = inverse_geometric_transform(y, k, flip).to(torch.promote_types(y.dtype, torch.float32))
        total = back if total is None else total + back
    return (total / len(TRANSFORMS)).to(x.dtype)


__all__ = ["TRANSFORMS", "geometric_transform", "inverse_geometric_transform", "self_ensemble"]
