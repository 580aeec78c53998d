"""Collect the offline photographs the shipped demo model is trained and tested on.

    python scripts/prepare_demo_photos.py data/demo      # → data/demo/train/*.png, data/demo/heldout/*.png
    python scripts/prepare_demo_photos.py data/demo48 --wallpapers   # the same, plus the KDE wallpapers in train/

An OUT that already holds photos is refused unless --overwrite is given; every photo is written atomically.

Sources: scikit-image's bundled photos (in its wheel) and Debian's opencv-doc samples
(/usr/share/doc/opencv-doc/examples/data; `apt-get install opencv-doc`). The held-out photos are never
trained on: they make the README's held-out table. Stereo/sequence partners of a held-out photo are left out.
With --wallpapers, Debian's plasma-workspace-wallpapers (/usr/share/wallpapers; `apt-get install
plasma-workspace-wallpapers`) join the training photos: the largest version of each, its longer side scaled
to at most 1280 pixels (so that a training crop is not mostly one flat region, and loading stays fast).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from interir.data.imageio import write_image  # atomic: a killed run leaves no half-written photo

OPENCV = Path("/usr/share/doc/opencv-doc/examples/data")
TRAIN_SKIMAGE = ("rocket", "coffee", "motorcycle_left")
TRAIN_OPENCV = ("aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg", "building.jpg",
                "butterfly.jpg", "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg", "left.jpg",
                "leuvenA.jpg", "messi5.jpg", "orange.jpg", "pca_test1.jpg", "rubberwhale1.png", "smarties.png",
                "stuff.jpg", "Blender_Suzanne1.jpg")
HELDOUT_SKIMAGE = ("astronaut", "chelsea")
HELDOUT_OPENCV = ("squirrel_cls.jpg", "HappyFish.jpg")
WALLPAPERS = Path("/usr/share/wallpapers")
WALLPAPER_SIDE = 1280


def _pixels(file: Path) -> int:
    """Pixels of a wallpaper version named WIDTHxHEIGHT (0 for any other name)."""
    w, _, h = file.stem.partition("x")
    return int(w) * int(h) if w.isdigit() and h.isdigit() else 0


def _wallpapers() -> list[tuple[str, Path]]:
    """(name, the largest image file) of every wallpaper package, sorted by name."""
    found = []
    for images in sorted(WALLPAPERS.glob("*/contents/images")):
        files = [f for f in images.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png")]
        if files:
            found.append((images.parent.parent.name, max(files, key=_pixels)))
    return found


def _skimage(name: str) -> np.ndarray:
    from skimage import data

    bundled = Path(data.__file__).parent / f"{name}.png"  # files in the wheel that have no loader function
    img = np.asarray(Image.open(bundled)) if bundled.is_file() else getattr(data, name)()
    return img[..., :3]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output folder (train/ and heldout/ are created in it)")
    parser.add_argument("--wallpapers", action="store_true",
                        help="also put the plasma-workspace-wallpapers photos into train/")
    parser.add_argument("--overwrite", action="store_true", help="replace the photos of an earlier run in OUT")
    args = parser.parse_args(argv)
    out = Path(args.out)
    missing = [n for n in TRAIN_OPENCV + HELDOUT_OPENCV if not (OPENCV / n).is_file()]
    if missing:
        print(f"opencv-doc samples missing ({', '.join(missing[:3])}…): apt-get install opencv-doc", file=sys.stderr)
        return 1
    taken = [f for split in ("train", "heldout") if (out / split).is_dir() for f in (out / split).iterdir()]
    if taken and not args.overwrite:
        print(f"{out} already holds photos ({taken[0]}, …): choose another folder or add --overwrite", file=sys.stderr)
        return 1
    papers = _wallpapers() if args.wallpapers else []
    if args.wallpapers and not papers:  # said before anything is written
        print(f"no wallpapers under {WALLPAPERS}: apt-get install plasma-workspace-wallpapers", file=sys.stderr)
        return 1
    for split, sk, cv in (("train", TRAIN_SKIMAGE, TRAIN_OPENCV), ("heldout", HELDOUT_SKIMAGE, HELDOUT_OPENCV)):
        folder = out / split
        for name in sk:
            write_image(folder / f"{name}.png", _skimage(name))
        for name in cv:
            write_image(folder / f"{Path(name).stem}.png", np.asarray(Image.open(OPENCV / name).convert("RGB")))
        count = len(sk) + len(cv)
        if split == "train":
            for name, file in papers:
                img = Image.open(file).convert("RGB")
                img.thumbnail((WALLPAPER_SIDE, WALLPAPER_SIDE), Image.LANCZOS)
                write_image(folder / f"wallpaper_{name}.png", np.asarray(img))
            count += len(papers)
        print(f"{split}: {count} photos in {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
