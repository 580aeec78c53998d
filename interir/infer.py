"""`interir restore`: restore image files or folders with a checkpoint, tiled for large images.

    interir restore photo.jpg scans/ -o restored/ [--checkpoint run/] [--tile 1024] [--overlap 32]
                    [--device auto] [--recursive] [--suffix _restored] [--bits auto|8|16]
                    [--overwrite | --skip-existing] [--in-place] [--compile]

Every input keeps its relative name under OUT (files given directly: their file name; files found in a
folder: their path relative to that folder), its format (by extension) and, unless --bits says otherwise,
its bit depth. Grey images are restored as RGB (the grey value repeated) and written back grey as the
BT.601 luma 0.299 R + 0.587 G + 0.114 B; an alpha channel is passed through unchanged. Writes are atomic
(temporary file, then rename). An output may never replace an input unless --in-place is given; an
existing output is replaced only with --overwrite. A file that cannot be read or restored is reported on
stderr (one line naming it) and skipped; the others are still restored and the exit code is 1 at the end.

Python API: `restore_image(model, img)` (C×H×W with 1–4 channels) and `restore_file(model, src, dst)`.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from interir import cpu_malloc
from interir.atomic import check_writable_folder, remove_stale_temporaries
from interir.data.imageio import IMAGE_EXTENSIONS, list_images, load_image, natural_key, quantize, write_image
from interir.devices import resolve_device
from interir.errors import InterIRError
from interir.progress import progress as show_progress
from interir.progress import say
from interir.model.inputs import check_finite_output
from interir.tiling import restore_tiled

DEFAULT_TILE = 1024  # images up to 1024×1024 run in one piece (exact); larger ones are tiled
DEFAULT_OVERLAP = 32
LUMA_BT601 = (0.299, 0.587, 0.114)
EIGHT_BIT_ONLY = {".jpg", ".jpeg", ".bmp", ".webp"}  # formats without a 16-bit mode


# ------------------------------------------------------------------------------------------ Python API


def check_tiling(tile: int, overlap: int, multiple: int = 4) -> None:
    """One-line errors for tile/overlap values restore_tiled cannot use."""
    if overlap < 0:
        raise InterIRError(f"--overlap must be ≥ 0, got {overlap}")
    if tile < 0:
        raise InterIRError(f"--tile must be ≥ 0 (0 = never tile), got {tile}")
    if tile and tile % multiple:
        raise InterIRError(f"--tile must be a multiple of {multiple} (the model's padding multiple), got {tile}")
    if tile and tile < 3 * overlap + max(multiple, 16):
        need = 3 * overlap + max(multiple, 16)
        raise InterIRError(f"--tile {tile} is too small for --overlap {overlap}: neighbouring tiles share "
                           f"3×overlap pixels, so use --tile ≥ {need} (or lower --overlap)")


def restore_image(model, img: torch.Tensor, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
                  device: torch.device | str | None = None, progress: bool = False) -> torch.Tensor:
    """Restore a C×H×W float image in [0, 1] with C = 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA).

    Grey is restored as RGB and returned as BT.601 luma; alpha is returned unchanged. Result: C×H×W in [0, 1].
    """
    if img.dim() != 3 or img.shape[0] not in (1, 2, 3, 4):
        raise InterIRError(f"expected a C×H×W image with 1–4 channels, got shape {tuple(img.shape)}")
    c = img.shape[0]
    grey = c <= 2
    alpha = img[-1:] if c in (2, 4) else None
    rgb = img[:1].expand(3, -1, -1) if grey else img[:3]
    out = restore_tiled(model, rgb[None].float().contiguous(), tile, overlap, device=device,
                        progress=progress)[0]
    out = check_finite_output(out).clamp_(0, 1)
    if grey:
        w = torch.tensor(LUMA_BT601, dtype=out.dtype).view(3, 1, 1)
        out = (out * w).sum(0, keepdim=True).clamp_(0, 1)
    if alpha is not None:
        out = torch.cat([out, alpha.to(out.dtype)], 0)
    return out


def restore_file(model, src: str | os.PathLike, dst: str | os.PathLike, *, bits: int | None = None,
                 tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP, device=None,
                 progress: bool = False) -> tuple[int, bool]:
    """Read `src`, restore it, write `dst` atomically (format from dst's extension). bits: None = the
    input's depth. Returns (bits written, whether a 16-bit request fell back to 8 bits for the format)."""
    img, in_bits = load_image(src, channels=None)
    cpu_malloc.release_free_memory()  # the decoder's buffers, back before the tiles' feature maps
    out = restore_image(model, img, tile, overlap, device, progress)
    del img  # before quantize's and the encoder's buffers: the peak of a large photo (docs/performance.md)
    want = bits or in_bits
    fell_back = want == 16 and Path(dst).suffix.lower() in EIGHT_BIT_ONLY
    out_bits = 8 if fell_back else want
    # alpha k/(2^b−1) quantises back to k: bit-exact
    write_image(dst, quantize(out, out_bits))
    return out_bits, fell_back


# ----------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files (PNG, JPEG, TIFF, BMP, WebP; 8/16-bit; grey, RGB, RGBA) or folders")
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="output folder; outputs keep the inputs' relative names and formats")
    parser.add_argument("-c", "--checkpoint", metavar="CKPT",
                        help="weights (.safetensors) or an experiment folder (default: the shipped small model)")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE,
                        help=f"tile side in pixels, a multiple of 4; images up to this size run in one piece "
                             f"(0 = never tile; default {DEFAULT_TILE})")
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP,
                        help=f"context pixels each tile discards at its inner edges; neighbours are cross-faded "
                             f"over as many more, so tiles advance by tile − 3×overlap (default {DEFAULT_OVERLAP})")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("-r", "--recursive", action="store_true", help="also restore images in sub-folders")
    parser.add_argument("--suffix", default="", help="appended to each output's file stem (default: none)")
    parser.add_argument("--bits", choices=("auto", "8", "16"), default="auto",
                        help="output bit depth (default auto: the input's; JPEG/BMP/WebP stay 8-bit)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    group.add_argument("--skip-existing", action="store_true",
                       help="leave existing outputs as they are and count them as done (resume a run)")
    parser.add_argument("--in-place", action="store_true",
                        help="write each output next to its input, replacing the input unless --suffix is given")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the network first (about a minute; pays off over many or large images, "
                             "docs/performance.md)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


@dataclass
class Job:
    src: Path
    rel: Path  # relative name under the output folder
    dst: Path | None = None


def collect_inputs(inputs: list[str], recursive: bool, exclude: Path | None = None) -> list[Job]:
    """Jobs for the given files and folders (a missing path is an InterIRError). Folder contents are
    filtered by image extension; a file named explicitly is kept whatever its extension (it fails later,
    by name, if it is not an image)."""
    jobs: list[Job] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            files = _walk_images(p, exclude) if recursive else list_images(p)
            jobs += [Job(f, f.relative_to(p)) for f in files]
        elif p.is_file():
            jobs.append(Job(p, Path(p.name)))
        elif p.exists():
            raise InterIRError(f"input {p} is neither a file nor a folder")
        else:
            raise InterIRError(f"input not found: {p}")
    return jobs


def _walk_images(root: Path, exclude: Path | None) -> list[Path]:
    """Image files under root (hidden files and folders skipped, `exclude` not entered), natural order."""
    out = []
    ex = exclude.resolve() if exclude is not None else None
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted((d for d in dirs if not d.startswith(".") and (ex is None or (here / d).resolve() != ex)),
                         key=natural_key)
        out += [here / f for f in sorted(files, key=natural_key)
                if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS]
    return out


def plan_outputs(jobs: list[Job], out: Path | None, suffix: str, in_place: bool,
                 skip_existing: bool = False) -> int:
    """Fill in each job's destination; refuse outputs that would replace an input (unless in_place) and two
    inputs that map to the same output. An in-place run with a suffix and skip_existing (resuming one) leaves
    out the inputs that are another input's output (photo_r.png of photo.png): they are kept, not restored.
    Returns how many were left out."""
    def name_of(j: Job) -> str:
        return j.rel.stem + suffix + j.rel.suffix

    left_out = 0
    if in_place and suffix and skip_existing:
        outputs = {j.src.with_name(name_of(j)).resolve() for j in jobs}
        kept = [j for j in jobs if j.src.resolve() not in outputs]
        left_out = len(jobs) - len(kept)
        jobs[:] = kept
    inputs = {}
    for j in jobs:
        st = j.src.stat()
        inputs[(st.st_dev, st.st_ino)] = j.src
    seen: dict[Path, Path] = {}
    for j in jobs:
        j.dst = j.src.with_name(name_of(j)) if in_place else out / j.rel.with_name(name_of(j))
        key = j.dst.resolve()
        if key in seen:
            raise InterIRError(f"two inputs would be written to the same output {j.dst}: {seen[key]} and {j.src}")
        seen[key] = j.src
        if j.dst.is_dir():
            raise InterIRError(f"the output of {j.src} would be {j.dst}, which is a folder; choose another -o "
                               f"folder or a --suffix (nothing was restored)")
        if not j.dst.exists():
            continue
        st = j.dst.stat()
        hit = inputs.get((st.st_dev, st.st_ino))
        if hit is None or (in_place and hit == j.src and not suffix):
            continue  # --in-place without --suffix replaces each input by its own restoration, on purpose
        if in_place:
            raise InterIRError(f"the restoration of {j.src} would be written to {j.dst}, which is another input "
                               f"of this run; choose another --suffix (nothing was restored)")
        raise InterIRError(f"output {j.dst} would overwrite the input {hit}; choose another -o folder "
                           f"or a --suffix (--in-place replaces inputs on purpose)")
    return left_out


def run(args: argparse.Namespace) -> int:
    from interir.checkpoint import load_model
    from interir.tiling import model_multiple

    if args.in_place and args.output:
        raise InterIRError("give either -o OUT or --in-place, not both")
    if not args.in_place and not args.output:
        raise InterIRError("give an output folder with -o OUT (or --in-place to write next to the inputs)")
    if any(sep in args.suffix for sep in ("/", "\\", os.sep)) or args.suffix in (".", ".."):
        raise InterIRError(f"--suffix {args.suffix!r} must not hold a path separator: it is appended to each "
                           "file's name")
    if args.in_place and not args.suffix and args.skip_existing:
        raise InterIRError("--skip-existing with --in-place and no --suffix would skip every image (each output is "
                           "its input); drop one of them, or give a --suffix")
    check_tiling(args.tile, args.overlap)
    out = Path(args.output) if args.output else None
    if out is not None and out.exists() and not out.is_dir():
        raise InterIRError(f"output {out} exists and is not a folder")
    if out is not None and not out.exists() and out.suffix.lower() in IMAGE_EXTENSIONS:
        raise InterIRError(f"-o {out} looks like an image file, but -o names a folder (outputs keep the inputs' "
                           f"names); give a folder, e.g. -o {out.with_suffix('')}/, or a --suffix with --in-place")
    jobs = collect_inputs(args.inputs, args.recursive, exclude=out)
    if not jobs:
        raise InterIRError(f"no images found in {', '.join(args.inputs)}"
                           + ("" if args.recursive else " (use --recursive for sub-folders)"))
    left_out = plan_outputs(jobs, out, args.suffix, args.in_place, args.skip_existing)
    if left_out:
        say(f"interir restore: {left_out} input(s) named like another input's output (--suffix {args.suffix}) are "
            "taken as earlier restorations and left as they are (--skip-existing)")
    for folder in sorted({job.dst.parent for job in jobs}) if out is None else [out]:
        check_writable_folder(folder)
    device = resolve_device(args.device)
    model, _ = load_model(args.checkpoint, device)
    check_tiling(args.tile, args.overlap, model_multiple(model))
    if args.compile:
        from interir.compiled import CompiledNetwork

        model = CompiledNetwork(model)
        say("interir restore: --compile: the first image compiles the network (about a minute on a CPU; once more "
            "for the first image of a second size)")
    bits = None if args.bits == "auto" else int(args.bits)

    for folder in {job.dst.parent for job in jobs}:
        remove_stale_temporaries(folder)  # what an earlier, killed run left behind
    done, skipped, failed, fell_back = 0, 0, [], False
    bar = show_progress(jobs, desc="restore", unit="img", enabled=not args.quiet)
    for job in bar:
        exists = job.dst.exists() and not (args.in_place and not args.suffix)
        if exists and args.skip_existing:
            skipped += 1
            continue
        if exists and not args.overwrite:
            failed.append(job.src)
            say(f"interir restore: {job.src}: output {job.dst} exists; not replaced (use --overwrite, "
                 f"or --skip-existing)")
            continue
        if job.src.suffix.lower() not in IMAGE_EXTENSIONS:
            failed.append(job.src)
            say(f"interir restore: {job.src}: unsupported file type {job.src.suffix or '(no extension)'!r}, "
                 f"skipped (supported: {', '.join(IMAGE_EXTENSIONS)})")
            continue
        try:
            _, fb = restore_file(model, job.src, job.dst, bits=bits, tile=args.tile, overlap=args.overlap,
                                 device=device, progress=not args.quiet)
            fell_back |= fb
            done += 1
        except (InterIRError, OSError, ValueError, RuntimeError) as exc:
            if getattr(args, "debug", False):
                raise
            failed.append(job.src)
            msg = " ".join(str(exc).split()) or type(exc).__name__
            say(f"interir restore: {msg} (skipped)" if str(job.src) in msg
                 else f"interir restore: {job.src}: {msg} (skipped)")
    bar.close()
    if fell_back:
        say("interir restore: note: JPEG/BMP/WebP have no 16-bit mode; those outputs were written 8-bit")
    parts = [f"restored {done} of {len(jobs)} image(s) " + (f"into {out}" if out is not None else "in place")]
    if skipped:
        parts.append(f"{skipped} skipped (output exists)")
    if failed:
        parts.append(f"{len(failed)} failed")
    print(", ".join(parts))
    return 1 if failed else 0
