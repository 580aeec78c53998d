"""`interir demo`: degrade a photo, restore it with the shipped model, print the gain, draw one picture.

    interir demo                                   # the bundled photo, H+R+N, seed 0 → interir_demo.png
    interir demo --image my.jpg --combo H+N --seed 3 -o demo.png

Works offline on a fresh install. The picture shows degraded | restored | clean, the restoration after
every stage, the learned step sizes and the explainable-conv attention of the network's blocks.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from interir.errors import InterIRError
from interir.validation import seed_arg

BUNDLED_PHOTO = Path(__file__).parent / "assets" / "demo.png"


def run_demo(image: Path, combo: str, seed: int, checkpoint: str | None, max_size: int, device: str = "cpu"):
    """Returns (explanation, degraded, clean, metrics dict, seconds taken by the restoration)."""
    from interir.checkpoint import load_model
    from interir.data.degrade import degrade_combo, parse_combo
    from interir.data.imageio import read_image
    from interir.explain import explain_image, resize_max
    from interir.metrics import SSIM_WINDOW, psnr, ssim

    combo = parse_combo(combo)
    clean = resize_max(read_image(image), max_size)
    if min(clean.shape[-2:]) < SSIM_WINDOW:  # before the restoration, not after it
        raise InterIRError(f"{image} is {clean.shape[-1]}×{clean.shape[-2]} pixels; the demo scores SSIM, which "
                           f"needs at least {SSIM_WINDOW}×{SSIM_WINDOW}")
    degraded, params = degrade_combo(clean, combo, seed=seed)
    degraded = (degraded * 255).round() / 255  # an 8-bit image, as a user's file would be
    model, _ = load_model(checkpoint, device)
    start = time.perf_counter()
    ex = explain_image(model, degraded, device)
    seconds = time.perf_counter() - start
    metrics = {
        "psnr_in": psnr(degraded, clean), "ssim_in": ssim(degraded, clean),
        "psnr_out": psnr(ex.output, clean), "ssim_out": ssim(ex.output, clean),
        "levels": {k: round(float(params[k]), 1) for k in ("haze", "rain", "noise")},
    }
    return ex, degraded, clean, metrics, seconds


def demo_figure(ex, degraded, clean, metrics, combo: str):
    """One PIL image: the comparison row, the stages, the step sizes and the attention summary."""
    from interir import figures as fig
    from interir.explain import attention_summary_figure, stage_figure, step_figure

    side = 256
    top = fig.hstack([
        fig.caption(fig.fit(fig.to_pil(degraded), side), f"degraded ({combo})\n"
                    f"PSNR {metrics['psnr_in']:.2f} dB  SSIM {metrics['ssim_in']:.3f}"),
        fig.caption(fig.fit(fig.to_pil(ex.output), side), "restored by InterIR\n"
                    f"PSNR {metrics['psnr_out']:.2f} dB  SSIM {metrics['ssim_out']:.3f}"),
        fig.caption(fig.fit(fig.to_pil(clean), side), "clean\n" + "  ".join(
            f"{k} {v:g}" for k, v in metrics["levels"].items())),
    ])
    rows = [fig.title(top, "InterIR demo"), stage_figure(ex, thumb=160)]
    extras = []
    if ex.step_sizes:
        extras.append(step_figure(ex))
    if ex.blocks:
        extras.append(attention_summary_figure(ex.blocks))
    if extras:
        rows.append(fig.hstack(extras))
    return fig.vstack(rows)


_MARK = ("Software", "interir demo")  # a PNG text chunk that marks the demo's own pictures


def is_demo_picture(path: Path) -> bool:
    """Whether `path` is a PNG that `interir demo` wrote (so a rerun may replace it)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.format == "PNG" and im.info.get(_MARK[0]) == _MARK[1]
    except Exception:
        return False


def write_demo_picture(path: Path, picture) -> None:
    """Save atomically; PNGs carry the demo's mark."""
    from PIL.PngImagePlugin import PngInfo

    from interir.atomic import atomic_path
    from interir.data.imageio import write_image

    if path.suffix.lower() != ".png":
        write_image(path, picture.convert("RGB"))
        return
    info = PngInfo()
    info.add_text(*_MARK)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG", pnginfo=info, optimize=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", default=None, help="a clean photo to degrade (default: the bundled one)")
    parser.add_argument("--combo", default="H+R+N", help="degradations: H+R+N, H+R, H+N, R+N, H, R or N")
    parser.add_argument("--seed", type=seed_arg, default=0, help="seed of the degradation levels and patterns")
    parser.add_argument("--checkpoint", "-c", default=None, help="weights (default: the shipped small model)")
    parser.add_argument("--max-size", type=int, default=256, help="longer side the photo is resized to")
    parser.add_argument("-o", "--output", default="interir_demo.png",
                        help="the picture to write (a picture an earlier demo wrote is replaced; any other file "
                             "only with --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output picture")


def run(args: argparse.Namespace) -> int:
    from interir.atomic import check_writable_folder
    from interir.data.degrade import parse_combo
    from interir.data.imageio import IMAGE_EXTENSIONS

    args.combo = parse_combo(args.combo)  # checked, and named canonically (h+r → H+R) in the output
    image = Path(args.image) if args.image else BUNDLED_PHOTO
    if not image.is_file():
        raise InterIRError(f"--image {image} is a folder; give one photo" if image.is_dir()
                           else f"image not found: {image}")
    if args.max_size < 16:
        raise InterIRError("--max-size must be at least 16")
    out = Path(args.output)
    if out.is_dir():
        raise InterIRError(f"-o {out} is a folder; give a file name such as {out / 'interir_demo.png'}")
    if out.exists() and out.resolve() == image.resolve():
        raise InterIRError("the output picture would replace the input photo; choose another -o")
    if out.exists() and not args.overwrite and not is_demo_picture(out):
        raise InterIRError(f"{out} exists and is not a picture an earlier `interir demo` wrote; pass --overwrite "
                           f"or choose another -o")
    if out.suffix.lower() not in IMAGE_EXTENSIONS:
        raise InterIRError(f"-o {out}: use an image extension ({', '.join(IMAGE_EXTENSIONS)})")
    check_writable_folder(out.parent, "folder of the picture")
    ex, degraded, clean, m, seconds = run_demo(image, args.combo, args.seed, args.checkpoint, args.max_size)
    h, w = clean.shape[-2:]
    print(f"{image.name} ({w}×{h}) degraded with {args.combo} (haze {m['levels']['haze']:g}, "
          f"rain {m['levels']['rain']:g}, noise {m['levels']['noise']:g}; seed {args.seed})")
    print(f"  degraded   PSNR {m['psnr_in']:6.2f} dB   SSIM {m['ssim_in']:.4f}")
    print(f"  restored   PSNR {m['psnr_out']:6.2f} dB   SSIM {m['ssim_out']:.4f}   "
          f"({m['psnr_out'] - m['psnr_in']:+.2f} dB, {seconds:.2f} s on CPU)")
    write_demo_picture(out, demo_figure(ex, degraded, clean, m, args.combo))
    print(f"wrote {out}")
    return 0
