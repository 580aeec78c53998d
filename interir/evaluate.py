"""`interir eval`: the paper's Table 1 for one or more checkpoints — PSNR/SSIM per degradation combination + average.

    interir eval experiments/mdir_small --data testsets/mdir        # a set written by `interir synth`
    interir eval model.safetensors --synthetic photos/ --seed 0     # build the 7-combination set on the fly
    interir eval model.safetensors --data Rain100L --y-channel      # a paired folder: one row
    interir eval a.safetensors b.safetensors --data testsets/mdir --figure crops.png   # compare models
    interir eval model.safetensors --data big_set --tile 512 --overlap 32 --self-ensemble --save-images out/

Metrics follow docs/model.md (interir.metrics: BasicSR's rounding, RGB by default, the Y channel for deraining).
Each row also gives the degraded input's PSNR/SSIM, so the gain is visible. Results are printed and saved
(atomically) in --out: results.csv/json (a row per set and model, with the average) and per_image.csv/json
(a row per image and model, with the seconds its forward pass took). Every option is described, with real
output, in docs/evaluation.md.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
import torch.nn as nn
from torch import Tensor
from torch.utils.data import Dataset

from interir.atomic import atomic_write_text, check_writable_folder, remove_stale_temporaries
from interir.data.imageio import IMAGE_EXTENSIONS
from interir.devices import resolve_device
from interir.errors import InterIRError
from interir.infer import DEFAULT_OVERLAP  # the same default as `interir restore`
from interir.model.inputs import check_finite_output

METRIC_KEYS = ("psnr_input", "ssim_input", "psnr", "ssim")
FIGURE_ROWS = 4  # images shown by --figure (spread over the sets)
FIGURE_CROP = 192  # side of the centre crops of --figure, at most


def load_eval_sets(root: str | Path) -> dict[str, Dataset]:
    """{row name: dataset}: the combinations of an `interir synth` set, or one paired folder."""
    from interir.data.datasets import MANIFEST, PairedFolderDataset, load_synthetic_testset

    root = Path(root)
    if not root.exists():
        raise InterIRError(f"dataset folder not found: {root}")
    if (root / MANIFEST).is_file():
        return load_synthetic_testset(root)
    return {root.name: PairedFolderDataset(root)}


# ------------------------------------------------------------------------------------ the forward pass


@dataclass(frozen=True)
class ForwardOptions:
    """How each test image goes through the network. tile: 0 = the whole image in one forward, else tiles of
    this side blended as `interir restore` blends them (interir.tiling), with `overlap` context pixels;
    self_ensemble: average the 8 flips/rotations (interir.ensemble)."""

    tile: int = 0
    overlap: int = DEFAULT_OVERLAP
    self_ensemble: bool = False

    def describe(self) -> str:
        """A few words for the table's header ('' for the plain forward pass)."""
        parts = [f"tiles {self.tile}/{self.overlap}"] if self.tile else []
        return ", ".join(parts + (["x8 self-ensemble"] if self.self_ensemble else []))


def restore_for_eval(model: nn.Module, degraded: Tensor, device: torch.device | str = "cpu",
                     options: ForwardOptions = ForwardOptions()) -> Tensor:
    """degraded: 3×H×W float in [0, 1] → the restored 3×H×W float32 in [0, 1], on the CPU.

    The network runs on `device`, tiled and/or self-ensembled as `options` says; a NaN/Inf output is an
    InterIRError."""
    from interir.ensemble import self_ensemble
    from interir.tiling import restore_tiled

    def forward(batch: Tensor) -> Tensor:  # 1×3×h×w → 1×3×h×w (h, w swapped by the ensemble's rotations)
        return restore_tiled(model, batch, options.tile, options.overlap, device=device)

    x = degraded[None].float()
    with torch.no_grad():
        y = self_ensemble(forward, x) if options.self_ensemble else forward(x)
    return check_finite_output(y.float().cpu()[0]).clamp(0, 1)


# ------------------------------------------------------------------------------- per image and per set


@dataclass
class ImageResult:
    """One test image after restoration: its set, index in the set, file name, tensors (3×H×W in [0, 1]),
    metrics and the seconds its forward pass took (reading the files and the metrics not included)."""

    set: str
    index: int
    name: str
    input_path: Path | None
    degraded: Tensor
    target: Tensor
    restored: Tensor
    psnr_input: float
    ssim_input: float
    psnr: float
    ssim: float
    seconds: float

    def record(self, model: str | None = None) -> dict[str, Any]:
        """The per-image table's row (no tensors); `model` puts the model's label first."""
        row = {"model": model} if model is not None else {}
        return {**row, "set": self.set, "name": self.name, "psnr_input": self.psnr_input,
                "ssim_input": self.ssim_input, "psnr": self.psnr, "ssim": self.ssim, "seconds": self.seconds}


def warm_up(model: nn.Module, device: torch.device | str) -> None:
    """One untimed forward pass on a small 1×3×32×32 image, so that one-time set-up (backend choice, lazy
    initialisation, CUDA context) is not counted in the first image's seconds."""
    with torch.no_grad():
        model(torch.full((1, 3, 32, 32), 0.5, device=device))


def images_to_evaluate(ds: Dataset, max_images: int | None) -> int:
    """How many images of `ds` are evaluated: all of them, or the first max_images."""
    return min(len(ds), max_images or len(ds))


def input_file(ds: Dataset, index: int) -> Path | None:
    """The degraded image file of item `index`, read from the dataset's pair list (without decoding it); None
    for datasets without one."""
    pairs = getattr(ds, "pairs", None)
    return Path(pairs[index][0]) if pairs is not None else None


def image_name(ds: Dataset, index: int) -> str:
    """The name of item `index` in the tables and under --save-images: its input file's name."""
    path = input_file(ds, index)
    return path.name if path is not None else f"{index:05d}.png"


def check_crop_border(sets: dict[str, Dataset], max_images: int | None, crop_border: int) -> None:
    """Before any work: an InterIRError when --crop-border would leave nothing of an image to be evaluated
    (image sizes from the files' headers; images whose header Pillow cannot read are checked when evaluated)."""
    from PIL import Image

    if crop_border <= 0:
        return
    for set_name, ds in sets.items():
        for i in range(images_to_evaluate(ds, max_images)):
            path = input_file(ds, i)
            try:
                with Image.open(path) as im:
                    w, h = im.size
            except Exception:  # not an image Pillow reads by its header: evaluate_images checks it
                continue
            if 2 * crop_border >= min(w, h):
                raise InterIRError(f"--crop-border {crop_border} leaves nothing of the {w}×{h} image "
                                   f"{image_name(ds, i)} of set {set_name}")


def evaluate_images(model: nn.Module, sets: dict[str, Dataset], device: torch.device | str = "cpu", *,
                    y_channel: bool = False, crop_border: int = 0, max_images: int | None = None,
                    options: ForwardOptions = ForwardOptions(), progress: bool = True,
                    desc: str = "eval") -> Iterator[ImageResult]:
    """Restore and score every image of every set (the first max_images of each), one ImageResult at a time,
    so that a caller can save or crop each restored image without holding them all."""
    from interir.metrics import psnr, ssim
    from interir.progress import progress as show_progress

    device = torch.device(device)
    was_training = model.training
    model.eval()
    total = sum(images_to_evaluate(ds, max_images) for ds in sets.values())
    bar = show_progress(total=total, desc=desc, unit="img", enabled=progress)
    kw = dict(crop_border=crop_border, test_y_channel=y_channel)
    try:
        for set_name, ds in sets.items():
            for i in range(images_to_evaluate(ds, max_images)):
                item = ds[i]
                degraded, clean = item["input"], item["target"]
                if 2 * crop_border >= min(clean.shape[-2:]):
                    raise InterIRError(f"--crop-border {crop_border} leaves nothing of the {clean.shape[-1]}×"
                                       f"{clean.shape[-2]} image {image_name(ds, i)} of set {set_name}")
                start = time.perf_counter()
                restored = restore_for_eval(model, degraded, device, options)
                seconds = time.perf_counter() - start  # the .cpu() copy above waited for the device
                yield ImageResult(set_name, i, image_name(ds, i), input_file(ds, i), degraded, clean, restored,
                                  psnr(degraded, clean, **kw), ssim(degraded, clean, **kw),
                                  psnr(restored, clean, **kw), ssim(restored, clean, **kw), seconds)
                bar.update(1)
    finally:
        bar.close()
        model.train(was_training)


def summarise(records: Iterable[dict[str, Any]], set_names: Iterable[str]) -> list[dict[str, Any]]:
    """Per-image records → one row per set {set, images, psnr_input, ssim_input, psnr, ssim} (the means over its
    images), in `set_names` order, and a final 'average' row: the mean of the set rows, as the paper's Table 1
    averages its seven test sets."""
    sums = {name: dict.fromkeys(METRIC_KEYS, 0.0) for name in set_names}
    counts = dict.fromkeys(sums, 0)
    for r in records:
        counts[r["set"]] += 1
        for k in METRIC_KEYS:
            sums[r["set"]][k] += r[k]
    rows = [{"set": name, "images": counts[name], **{k: v / max(counts[name], 1) for k, v in s.items()}}
            for name, s in sums.items()]
    rows.append({"set": "average", "images": sum(r["images"] for r in rows),
                 **{k: sum(r[k] for r in rows) / len(rows) for k in METRIC_KEYS}})
    return rows


def evaluate_sets(model: nn.Module, sets: dict[str, Dataset], device: torch.device | str = "cpu", *,
                  y_channel: bool = False, crop_border: int = 0, max_images: int | None = None,
                  progress: bool = True, options: ForwardOptions = ForwardOptions()) -> list[dict[str, Any]]:
    """One row per set {set, images, psnr_input, ssim_input, psnr, ssim} and a final 'average' row (see
    summarise)."""
    records = (r.record() for r in evaluate_images(model, sets, device, y_channel=y_channel,
                                                   crop_border=crop_border, max_images=max_images,
                                                   options=options, progress=progress))
    return summarise(records, sets)


def with_differences(rows_by_model: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """{label: summarise rows} → every model's rows (model by model) with the label first and delta_psnr /
    delta_ssim: the difference to the first model's row of the same set (0 for the first model)."""
    reference = {r["set"]: r for r in next(iter(rows_by_model.values()))}
    return [{"model": label, **r, "delta_psnr": r["psnr"] - reference[r["set"]]["psnr"],
             "delta_ssim": r["ssim"] - reference[r["set"]]["ssim"]}
            for label, rows in rows_by_model.items() for r in rows]


# ----------------------------------------------------------------------------------------------- tables


def format_table(rows: list[dict[str, Any]], colour_space: str) -> str:
    """Markdown table of `evaluate_sets` rows."""
    lines = [f"| set | images | input PSNR / SSIM | restored PSNR / SSIM | gain dB |  ({colour_space})",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['images']} | {r['psnr_input']:.2f} / {r['ssim_input']:.4f} | "
                     f"{r['psnr']:.2f} / {r['ssim']:.4f} | {r['psnr'] - r['psnr_input']:+.2f} |")
    return "\n".join(lines)


def format_comparison(rows: list[dict[str, Any]], colour_space: str) -> str:
    """Markdown table of `with_differences` rows: a row per set, a column block per model (PSNR / SSIM), then
    each other model's difference to the first."""
    labels = list(dict.fromkeys(r["model"] for r in rows))
    ref = labels[0]
    by = {(r["model"], r["set"]): r for r in rows}
    sets = [r["set"] for r in rows if r["model"] == ref]
    head = ["set", "images", "input PSNR / SSIM", *(f"{m} PSNR / SSIM" for m in labels),
            *(f"{m} - {ref} dB / SSIM" for m in labels[1:])]
    lines = ["| " + " | ".join(head) + f" |  ({colour_space})", "|" + "---|" * len(head)]
    for s in sets:
        first = by[(ref, s)]
        cells = [s, str(first["images"]), f"{first['psnr_input']:.2f} / {first['ssim_input']:.4f}"]
        cells += [f"{by[(m, s)]['psnr']:.2f} / {by[(m, s)]['ssim']:.4f}" for m in labels]
        cells += [f"{by[(m, s)]['delta_psnr']:+.2f} / {by[(m, s)]['delta_ssim']:+.4f}" for m in labels[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


RESULT_FILES = ("results.csv", "results.json", "per_image.csv", "per_image.json")


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def save_results(out: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """results.csv and results.json (meta + rows) in `out`, each written atomically."""
    atomic_write_text(out / "results.csv", _csv_text(rows))
    atomic_write_text(out / "results.json", json.dumps({**meta, "rows": rows}, indent=2))


def save_per_image(out: Path, records: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """per_image.csv and per_image.json (meta + a row per image and model) in `out`, each written atomically."""
    atomic_write_text(out / "per_image.csv", _csv_text(records))
    atomic_write_text(out / "per_image.json", json.dumps({**meta, "rows": records}, indent=2))


# ------------------------------------------------------------------------------------ restored images


def saved_image_path(folder: Path, set_name: str, name: str, label: str | None = None) -> Path:
    """Where --save-images writes a restored image: FOLDER[/label]/set/name (label only when comparing)."""
    return (folder / label if label else folder) / set_name / name


def plan_saved_images(folder: Path, sets: dict[str, Dataset], max_images: int | None, labels: list[str] | None,
                      overwrite: bool) -> None:
    """Refuse, before any work, outputs that would replace an input or target of the sets, and (unless
    `overwrite`) outputs that already exist. labels: the models' labels when comparing, else None."""
    if folder.exists() and not folder.is_dir():
        raise InterIRError(f"--save-images {folder} exists and is not a folder")
    sources = set()
    for ds in sets.values():
        for pair in getattr(ds, "pairs", ()):
            sources.update(Path(p).resolve() for p in pair)
    planned = [saved_image_path(folder, s, image_name(ds, i), label)
               for label in (labels or [None]) for s, ds in sets.items()
               for i in range(images_to_evaluate(ds, max_images))]
    for p in planned:
        if p.resolve() in sources:
            raise InterIRError(f"--save-images would write {p}, which is an image of the test set; choose "
                               f"another folder")
    existing = [p for p in planned if p.exists()]
    if existing and not overwrite:
        raise InterIRError(f"--save-images: {len(existing)} of the {len(planned)} images to write exist already "
                           f"(e.g. {existing[0]}); pass --overwrite to replace them, or choose another folder")
    check_writable_folder(folder, "--save-images folder")
    for parent in {p.parent for p in planned if p.parent.is_dir()}:
        remove_stale_temporaries(parent)  # what an earlier, killed run left behind


def save_restored(path: Path, restored: Tensor, source: Path | None) -> int:
    """Write a restored 3×H×W image to `path` (atomic) at the bit depth of `source` (its input file: 16-bit
    stays 16-bit; 8 when there is none); the format follows the extension. Returns the bits written."""
    from interir.data.imageio import load_image, write_image

    bits = load_image(source, channels=None)[1] if source is not None else 8
    write_image(path, restored, bits=bits)
    return bits


# ----------------------------------------------------------------------------------------------- figure


def centre_crop(img: Tensor, size: int = FIGURE_CROP) -> Tensor:
    """The central min(size, H)×min(size, W) window of a C×H×W image."""
    h, w = img.shape[-2:]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return img[..., top:top + ch, left:left + cw].clone()  # a copy: the whole image is not kept alive


def figure_keys(sets: dict[str, Dataset], max_images: int | None, rows: int = FIGURE_ROWS) -> list[tuple[str, int]]:
    """(set, index) of the images --figure shows, `rows` of them at most: one image of each set in turn, the
    j-th set starting at its image j (modulo its size) so that the rows show different images and different
    sets; then a second round, and so on."""
    counts = {s: images_to_evaluate(ds, max_images) for s, ds in sets.items()}
    order = [(s, (i + j) % counts[s]) for i in range(max(counts.values(), default=0))
             for j, s in enumerate(sets) if i < counts[s]]
    return order[:rows]


@dataclass
class FigureRow:
    """One row of the --figure grid: the crops (3×h×w in [0, 1]) of an image, its models' restorations (label →
    (crop, PSNR)) and its target."""

    set: str
    name: str
    degraded: Tensor
    target: Tensor
    psnr_input: float
    restored: dict[str, tuple[Tensor, float]] = field(default_factory=dict)


def comparison_figure(rows: list[FigureRow], labels: list[str]):
    """A PIL image: one row per FigureRow, columns input | each model (in `labels` order) | target, every crop
    captioned (set, name and PSNR)."""
    from interir import figures as fig

    cells = []
    for r in rows:
        cells.append(fig.caption(fig.to_pil(r.degraded), f"{r.set} {r.name}\ninput {r.psnr_input:.2f} dB",
                                 below=True))
        for label in labels:
            crop, value = r.restored[label]
            cells.append(fig.caption(fig.to_pil(crop), f"{label}\n{value:.2f} dB", below=True))
        cells.append(fig.caption(fig.to_pil(r.target), "target\n ", below=True))
    return fig.grid(cells, ncols=len(labels) + 2)


# ------------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoints", nargs="*", metavar="CHECKPOINT",
                        help="weights file or experiment folder (default: the shipped model); two or more: compare "
                             "them (any networks of interir.model) in one table")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="FOLDER", help="an `interir synth` set, or a paired input/target folder")
    src.add_argument("--synthetic", metavar="CLEAN_FOLDER",
                     help="degrade the clean images of this folder under the 7 combinations (seeded) and evaluate")
    parser.add_argument("--seed", type=int, default=0, help="seed of --synthetic (default 0)")
    parser.add_argument("--y-channel", action="store_true", help="metrics on BT.601 Y (deraining); default RGB")
    parser.add_argument("--crop-border", type=int, default=0, help="pixels cropped from each edge before metrics")
    parser.add_argument("--max-images", type=int, default=None, help="at most this many images per set")
    parser.add_argument("--tile", type=int, default=0,
                        help="restore in tiles of this side, blended as `interir restore` does, so large images fit "
                             "in memory (a multiple of 4, or 8 for DGUNet; default 0: whole images)")
    parser.add_argument("--overlap", type=int, default=None,
                        help=f"with --tile: context pixels each tile discards at its inner edges; neighbours share "
                             f"3×overlap pixels (default {DEFAULT_OVERLAP})")
    parser.add_argument("--self-ensemble", action="store_true",
                        help="average the restorations of the 8 flips/rotations of each image (x8 forward passes)")
    parser.add_argument("--save-images", metavar="DIR", default=None,
                        help="write each restored image to DIR/SET/NAME (DIR/MODEL/SET/NAME when comparing) in "
                             "its input's format and bit depth")
    parser.add_argument("--figure", metavar="PATH", default=None,
                        help=f"write a grid of centre crops (at most {FIGURE_CROP}²) of {FIGURE_ROWS} images: "
                             f"input | each model | target")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--out", default=None,
                        help="folder for results.csv/json and per_image.csv/json (default eval_<checkpoint name>)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results, images and figure of an earlier run")


def check_options(args: argparse.Namespace) -> ForwardOptions:
    """One-line InterIRErrors, naming the option, for values no run could use; the forward-pass options."""
    from interir.infer import check_tiling

    if args.crop_border < 0:
        raise InterIRError(f"--crop-border must be ≥ 0, got {args.crop_border}")
    if args.max_images is not None and args.max_images < 1:
        raise InterIRError(f"--max-images must be ≥ 1, got {args.max_images}")
    if args.overlap is not None and not args.tile:
        raise InterIRError("--overlap only applies with --tile N (N > 0)")
    options = ForwardOptions(args.tile, DEFAULT_OVERLAP if args.overlap is None else args.overlap,
                             args.self_ensemble)
    check_tiling(options.tile, options.overlap)
    if args.figure is not None:
        figure = Path(args.figure)
        if figure.suffix.lower() not in IMAGE_EXTENSIONS:
            raise InterIRError(f"--figure {figure}: give an image file name ending in .png (or "
                               f"{', '.join(IMAGE_EXTENSIONS[1:])})")
        if figure.is_dir():
            raise InterIRError(f"--figure {figure} is a folder; give a file name such as {figure / 'crops.png'}")
        if figure.exists() and not args.overwrite:
            raise InterIRError(f"--figure {figure} exists from an earlier run; pass --overwrite to replace it, or "
                               f"choose another name")
        check_writable_folder(figure.parent, "--figure folder")
    return options


def model_labels(checkpoints: list[str]) -> list[str]:
    """Short unique names of the checkpoints for tables and folders: their file (or folder) stem, with -2, -3, …
    added to repeats; 'shipped' for the shipped model."""
    labels: list[str] = []
    for ckpt in checkpoints or [None]:
        base = Path(ckpt).stem if ckpt else "shipped"
        label, n = base, 1
        while label in labels:
            n += 1
            label = f"{base}-{n}"
        labels.append(label)
    return labels


def load_models(checkpoints: list[str], labels: list[str], device: torch.device,
                options: ForwardOptions) -> dict[str, tuple[nn.Module, dict[str, Any]]]:
    """{label: (network, checkpoint metadata)}, every checkpoint loaded (and its tiling checked against its
    network's padding multiple) before any image is restored; no checkpoint: the shipped model."""
    from interir.checkpoint import load_model
    from interir.infer import check_tiling
    from interir.tiling import model_multiple

    models = {}
    for label, ckpt in zip(labels, checkpoints or [None]):
        models[label] = load_model(ckpt, device)
        check_tiling(options.tile, options.overlap, model_multiple(models[label][0]))
    return models


def sets_of(args: argparse.Namespace, scratch: str) -> dict[str, Dataset]:
    """The sets of --data, or those --synthetic builds (seeded) in the folder `scratch`."""
    if not args.synthetic:
        return load_eval_sets(args.data)
    from interir.data.synth import build_testset

    if not Path(args.synthetic).is_dir():
        raise InterIRError(f"--synthetic needs a folder of clean images, got {args.synthetic}")
    build_testset(args.synthetic, scratch, seed=args.seed, progress=True)
    return load_eval_sets(scratch)


@dataclass
class Evaluation:
    """What a run gathers: each model's summary rows, every per-image record, the --figure rows."""

    rows_by_model: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    figure_rows: dict[tuple[str, int], FigureRow] = field(default_factory=dict)


def evaluate_models(models: dict[str, tuple[nn.Module, dict]], sets: dict[str, Dataset], device: torch.device,
                    args: argparse.Namespace, options: ForwardOptions, shown: list[tuple[str, int]]) -> Evaluation:
    """Every model over every set, one after the other: metrics per image, the restored images written under
    --save-images as they come, and centre crops kept of the `shown` (set, index) images only."""
    comparing = len(models) > 1
    result = Evaluation()
    for label, (model, _) in models.items():
        warm_up(model, device)
        records = []
        for res in evaluate_images(model, sets, device, y_channel=args.y_channel, crop_border=args.crop_border,
                                   max_images=args.max_images, options=options,
                                   desc=f"eval {label}" if comparing else "eval"):
            if args.save_images:
                save_restored(saved_image_path(Path(args.save_images), res.set, res.name,
                                               label if comparing else None), res.restored, res.input_path)
            if (res.set, res.index) in shown:
                row = result.figure_rows.setdefault((res.set, res.index), FigureRow(
                    res.set, res.name, centre_crop(res.degraded), centre_crop(res.target), res.psnr_input))
                row.restored[label] = (centre_crop(res.restored), res.psnr)
            records.append(res.record(label))
        result.rows_by_model[label] = summarise(records, sets)
        result.records += records
    return result


def results_meta(args: argparse.Namespace, options: ForwardOptions, checkpoints: list[str],
                 models: dict[str, tuple[nn.Module, dict]]) -> dict[str, Any]:
    """The description saved beside the rows: models (label, checkpoint, network), data and every option; for
    a single checkpoint also its `checkpoint` and `model` keys, as before comparisons existed."""
    described = [{"label": label, "checkpoint": str(ckpt or "shipped"), "network": meta["model"]}
                 for (label, (_, meta)), ckpt in zip(models.items(), checkpoints or [None])]
    meta = {"models": described, "data": args.data or f"synthetic:{args.synthetic}:seed{args.seed}",
            "colour_space": "Y" if args.y_channel else "RGB", "crop_border": args.crop_border,
            "max_images": args.max_images, "tile": options.tile, "overlap": options.overlap if options.tile else None,
            "self_ensemble": options.self_ensemble}
    if len(described) == 1:
        meta = {"checkpoint": described[0]["checkpoint"], "model": described[0]["network"], **meta}
    return meta


def run(args: argparse.Namespace) -> int:
    from interir.data.imageio import write_image

    options = check_options(args)
    checkpoints = list(args.checkpoints)
    labels = model_labels(checkpoints)
    comparing = len(labels) > 1
    out = Path(args.out or "eval_" + "_vs_".join(labels))
    earlier = [out / f for f in RESULT_FILES if (out / f).exists()]
    if earlier and not args.overwrite:
        raise InterIRError(f"{earlier[0]} exists from an earlier evaluation; pass --overwrite to replace it, or "
                           f"choose another --out")
    check_writable_folder(out, "results folder")
    device = resolve_device(args.device)
    models = load_models(checkpoints, labels, device, options)
    with tempfile.TemporaryDirectory(prefix="interir-eval-") as scratch:
        sets = sets_of(args, scratch)
        check_crop_border(sets, args.max_images, args.crop_border)
        if args.save_images:
            plan_saved_images(Path(args.save_images), sets, args.max_images, labels if comparing else None,
                              args.overwrite)
        shown = figure_keys(sets, args.max_images) if args.figure else []
        done = evaluate_models(models, sets, device, args, options, shown)
    meta = results_meta(args, options, checkpoints, models)
    header = meta["colour_space"] + (f", {options.describe()}" if options.describe() else "")
    if comparing:
        rows = with_differences(done.rows_by_model)
        for label, ckpt in zip(labels, checkpoints):
            spec = models[label][1]["model"]
            print(f"{label}: {ckpt} ({spec.get('name')} {spec.get('preset')})")
        print(format_comparison(rows, header))
    else:
        rows = [{"model": labels[0], **r} for r in done.rows_by_model[labels[0]]]
        print(format_table(rows, header))
    save_results(out, rows, meta)
    save_per_image(out, done.records, meta)
    print(f"saved {out / 'results.csv'}, {out / 'results.json'}, {out / 'per_image.csv'} and "
          f"{out / 'per_image.json'}")
    if args.save_images:
        print(f"restored images in {args.save_images}")
    if args.figure:
        write_image(args.figure, comparison_figure([done.figure_rows[k] for k in shown], labels))
        print(f"figure {args.figure}")
    return 0
