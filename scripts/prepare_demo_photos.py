"""Collect the offline photographs the shipped demo model is trained and tested on.

    python scripts/prepare_demo_photos.py data/demo      # → data/demo/train/*.png, data/demo/heldout/*.png

Sources: scikit-image's bundled photos (in its wheel) and Debian's opencv-doc samples
(/usr/share/doc/opencv-doc/examples/data; `apt-get install opencv-doc`). The held-out photos are never
trained on: they make the README's held-out table. Stereo/sequence partners of a held-out photo are left out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

OPENCV = Path("/usr/share/doc/opencv-doc/examples/data")
TRAIN_SKIMAGE = ("rocket", "coffee", "motorcycle_left")
TRAIN_OPENCV = ("aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg", "building.jpg",
                "butterfly.jpg", "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg", "left.jpg",
                "leuvenA.jpg", "messi5.jpg", "orange.jpg", "pca_test1.jpg", "rubberwhale1.png", "smarties.png",
                "stuff.jpg", "Blender_Suzanne1.jpg")
HELDOUT_SKIMAGE = ("astronaut", "chelsea")
HELDOUT_OPENCV = ("squirrel_cls.jpg", "HappyFish.jpg")


def _skimage(name: str) -> np.ndarray:
    from skimage import data

    bundled = Path(data.__file__).parent / f"{name}.png"  # files in the wheel that have no loader function
    img = np.asarray(Image.open(bundled)) if bundled.is_file() else getattr(data, name)()
    return img[..., :3]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output folder (train/ and heldout/ are created in it)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    missing = [n for n in TRAIN_OPENCV + HELDOUT_OPENCV if not (OPENCV / n).is_file()]
    if missing:
        print(f"opencv-doc samples missing ({', '.join(missing[:3])}…): apt-get install opencv-doc", file=sys.stderr)
        return 1
    for split, sk, cv in (("train", TRAIN_SKIMAGE, TRAIN_OPENCV), ("heldout", HELDOUT_SKIMAGE, HELDOUT_OPENCV)):
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        for name in sk:
            Image.fromarray(_skimage(name)).save(folder / f"{name}.png")
        for name in cv:
            Image.open(OPENCV / name).convert("RGB").save(folder / f"{Path(name).stem}.png")
        print(f"{split}: {len(sk) + len(cv)} photos in {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
