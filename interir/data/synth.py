"""`interir synth`: a multi-degradation test set (docs/data.md) from a folder of clean images, or a preview grid.

    interir synth CLEAN_DIR OUT_DIR [--seed 0] [--combos H+R+N,H] [--force]
    interir synth PHOTO_OR_DIR --preview grid.png [--tile 160]

Layout written (read back by interir.data.datasets.load_synthetic_testset):

    OUT_DIR/manifest.jsonl          one JSON record per degraded image (combination, levels, airlight,
                                    angle, length, seed, generator version, sha256 of the pixels)
    OUT_DIR/target/<name>.png       the clean image (RGB, 8-bit), shared by all combinations
    OUT_DIR/<combo>/input/<name>.png  the degraded image, for each combo in H+R+N H+R H+N R+N H R N

Each image's levels are drawn uniformly per combination from a seed that depends only on (--seed, the
image's name, the combination), so adding images leaves the others unchanged and the same command on the
same images gives the same pixels.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from interir.atomic import check_new_file, staged_set
from interir.data.degrade import COMBINATIONS, LEVEL_MAX, degrade, degrade_combo, mix_seed, parse_combo
from interir.data.datasets import MANIFEST
from interir.data.imageio import list_images, quantize, read_image, write_image
from interir.errors import InterIRError
from interir.validation import seed_arg
from interir.progress import progress as show_progress
from interir.progress import say

MIN_TILE, MAX_TILE = 32, 1024  # preview tile sides: the grid is 8 tiles wide
PREVIEW_FRACTIONS = (1 / 3, 2 / 3, 1.0)  # preview rows: these fractions of each maximum level (docs/data.md)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="folder of clean images (or, with --preview, one photo)")
    parser.add_argument("out", nargs="?", help="output folder of the test set")
    parser.add_argument("--seed", type=seed_arg, default=0, help="base seed (default 0)")
    parser.add_argument("--combos", default=",".join(COMBINATIONS),
                        help="comma-separated combinations to make (default: all 7)")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty output folder, replacing a previous set there; with --preview, "
                             "replace an existing preview file")
    parser.add_argument("--preview", metavar="PNG",
                        help="write a grid of one photo under all 7 combinations at three levels")
    parser.add_argument("--tile", type=int, default=160,
                        help=f"preview tile size in pixels, {MIN_TILE}–{MAX_TILE} (default 160)")
    parser.add_argument("--colors", type=int, default=0,
                        help="save the preview with a palette of this many colours, dithered (smaller file; "
                             "default 0: full RGB)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.preview is None and args.out is None:
        raise InterIRError("give an output folder (or --preview PNG)")
    src = Path(args.source)
    combos = []
    if args.out is not None:  # every value checked before the preview or the set is written
        combos = parse_combos(args.combos)
        if not src.is_dir():
            raise InterIRError(f"not a folder: {src} (a test set is made from a folder of clean images)")
        _check_out(src, Path(args.out), args.force)
    if args.preview is not None:
        photo = src if src.is_file() else _first_image(src)
        _check_preview_options(args.tile, args.colors)
        check_new_file(args.preview, "preview", overwrite=args.force, option="--force",
                       inputs=list_images(src) if src.is_dir() else [src])
        path = write_preview(photo, args.preview, seed=args.seed, tile=args.tile, colors=args.colors)
        print(f"wrote {path}")
    if args.out is not None:
        manifest = build_testset(args.source, args.out, seed=args.seed, combos=combos, force=args.force,
                                 progress=not args.quiet)
        n = sum(1 for _ in open(manifest, encoding="utf-8"))
        print(f"wrote {n} degraded images and {manifest}")
    return 0


def parse_combos(given: str | Sequence[str]) -> list[str]:
    """"H+R+N,N" (or ["H+R+N", "N"]) → the combinations in order, each once; a repeated or unknown one is an
    error."""
    names = given.split(",") if isinstance(given, str) else list(given)
    text = ",".join(names)
    combos = [parse_combo(c) for c in names if c.strip()]
    if not combos:
        raise InterIRError(f"--combos {text!r} names no combination; use e.g. H+R+N,N")
    repeated = sorted({c for c in combos if combos.count(c) > 1})
    if repeated:
        raise InterIRError(f"--combos {text!r} names {', '.join(repeated)} more than once")
    return combos


def _check_preview_options(tile: int, colors: int) -> None:
    if not MIN_TILE <= tile <= MAX_TILE:
        raise InterIRError(f"--tile must be between {MIN_TILE} and {MAX_TILE} pixels, got {tile}")
    if not 0 <= colors <= 256 or colors == 1:
        raise InterIRError(f"--colors must be 0 (full RGB) or 2–256, got {colors}")


def _first_image(folder: Path) -> Path:
    files = list_images(folder)
    if not files:
        raise InterIRError(f"no images in {folder}")
    return files[0]


def name_seed(seed: int, name: str, combo: str) -> int:
    """The seed of one degraded image: depends on the base seed, the image name and the combination."""
    h = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    return mix_seed(seed, h, COMBINATIONS.index(combo))


def pixels_sha256(arr: np.ndarray) -> str:
    """sha256 of an image's decoded pixels (H×W×C uint8, C order): independent of the PNG encoder."""
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


_PARTS = ("target", *COMBINATIONS, MANIFEST)  # what a set consists of (and what --force replaces)


def _check_out(source: Path, out: Path, force: bool) -> None:
    """Refuse an output that is a file, a non-empty folder without --force, a folder holding parts of a set
    (target/, H/, …) that no earlier `interir synth` made (no manifest), or a folder whose replaced parts hold
    the source images (replacing them would delete the sources)."""
    if out.exists() and not out.is_dir():
        raise InterIRError(f"output {out} exists and is not a folder")
    replaced = [part for part in _PARTS if (out / part).exists()]
    if out.is_dir() and any(out.iterdir()) and not force:
        what = f" ({', '.join(replaced)})" if replaced else ""
        raise InterIRError(f"output folder {out} is not empty; use --force to replace the set in it{what}")
    if force and replaced and not (out / MANIFEST).is_file():
        raise InterIRError(f"{out} holds {', '.join(replaced)} but no {MANIFEST}, so no `interir synth` set is "
                           f"there to replace; --force would delete them: choose another output folder")
    src = source.resolve()
    for part in _PARTS[:-1]:
        target = (out / part).resolve()
        if src == target or target in src.parents:
            raise InterIRError(f"the source folder {source} lies inside {out / part}, which the new set replaces; "
                               f"copy the clean images elsewhere first (nothing was written)")


def build_testset(source: str | os.PathLike, out: str | os.PathLike, *, seed: int = 0,
                  combos: Sequence[str] = COMBINATIONS, force: bool = False, progress: bool = True) -> Path:
    """Write the test set (layout in the module docstring) and return the manifest's path.

    The set is made in a staging folder beside `out` and moved in only when every image is written, so an
    interrupted run, or a source image that cannot be read, leaves `out` as it was."""
    source, out = Path(source), Path(out)
    files = list_images(source)
    if not files:
        raise InterIRError(f"no images in {source}")
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise InterIRError(f"two source images share the name {f.stem!r}: {stems[f.stem]} and {f}")
        stems[f.stem] = f
    combos = parse_combos(combos)
    _check_out(source, out, force)
    bar = show_progress(total=len(files) * len(combos), desc="synth", unit="img", enabled=progress)
    unreadable = []
    try:
        with staged_set(out, _PARTS) as staging:
            with open(staging / MANIFEST, "w", encoding="utf-8") as manifest:
                for f in files:
                    # degrade the 8-bit clean image that target/ holds, so target + record regenerate the input
                    try:
                        clean8 = quantize(read_image(f))
                    except InterIRError as exc:
                        unreadable.append(f)
                        say(f"interir synth: {exc}")
                        bar.update(len(combos))
                        continue
                    if unreadable:
                        bar.update(len(combos))
                        continue  # nothing more is written once the set cannot be complete
                    clean = torch.from_numpy(clean8).permute(2, 0, 1).float() / 255.0
                    target = f"target/{f.stem}.png"
                    write_image(staging / target, clean8)
                    for combo in combos:
                        degraded, p = degrade_combo(clean, combo, seed=name_seed(seed, f.stem, combo))
                        arr = quantize(degraded)
                        rel = f"{combo}/input/{f.stem}.png"
                        write_image(staging / rel, arr)
                        rec = {"name": f.stem, "combo": combo, "input": rel, "target": target, "source": f.name,
                               "height": int(clean.shape[1]), "width": int(clean.shape[2]), "set_seed": seed,
                               **p, "pixels_sha256": pixels_sha256(arr)}
                        manifest.write(json.dumps(rec, sort_keys=True) + "\n")
                        bar.update(1)
                manifest.flush()
                os.fsync(manifest.fileno())
            if unreadable:
                raise InterIRError(f"{len(unreadable)} of {len(files)} source images cannot be read (listed above, "
                                   f"in {source}); nothing was written: fix or remove them and run again")
    finally:
        bar.close()
    return out / MANIFEST


# ------------------------------------------------------------------------------------------- preview


def preview_grid(clean: torch.Tensor, seed: int = 0, fractions: Sequence[float] = PREVIEW_FRACTIONS
                 ) -> list[list[torch.Tensor]]:
    """rows (one per level fraction) of [clean, degraded under each of the 7 combinations] (3×H×W each)."""
    rows = []
    for frac in fractions:
        row = [clean]
        for combo in COMBINATIONS:
            levels = {k: (LEVEL_MAX[k] * frac if k[0].upper() in combo else 0.0) for k in LEVEL_MAX}
            row.append(degrade(clean, **levels, seed=seed)[0])
        rows.append(row)
    return rows


def write_preview(photo: str | os.PathLike, out: str | os.PathLike, *, seed: int = 0, tile: int = 160,
                  colors: int = 0) -> Path:
    """Save a labelled grid: columns clean + 7 combinations, rows ⅓, ⅔ and all of each maximum level.

    colors: 0 for full RGB, else a median-cut palette of that many colours with Floyd–Steinberg dithering.
    """
    from PIL import Image, ImageDraw, ImageFont

    _check_preview_options(tile, colors)
    img = Image.fromarray(quantize(read_image(photo)))
    s = min(img.size)
    img = img.crop(((img.width - s) // 2, (img.height - s) // 2, (img.width + s) // 2, (img.height + s) // 2))
    clean = torch.from_numpy(np.array(img.resize((tile, tile), Image.LANCZOS))).permute(2, 0, 1).float() / 255
    rows = preview_grid(clean, seed)
    pad, head, left = 4, 18, 96
    grid = Image.new("RGB", (left + 8 * (tile + pad), head + 3 * (tile + pad)), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for j, label in enumerate(("clean", *COMBINATIONS)):
        draw.text((left + j * (tile + pad) + 4, 3), label, fill="black", font=font)
    for i, (frac, row) in enumerate(zip(PREVIEW_FRACTIONS, rows)):
        y = head + i * (tile + pad)
        text = "\n".join(f"{k} {LEVEL_MAX[k] * frac:.0f}" for k in LEVEL_MAX)
        draw.multiline_text((4, y + 4), text, fill="black", font=font)
        for j, t in enumerate(row):
            grid.paste(Image.fromarray(quantize(t)), (left + j * (tile + pad), y))
    if colors:
        palette = grid.quantize(colors, method=Image.Quantize.MEDIANCUT)
        grid = grid.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
    return write_image(out, grid)
