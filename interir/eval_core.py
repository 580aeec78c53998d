"""Evaluating a network on evaluation sets: the per-image forward (tiles, self-ensemble, timing) and metrics, and
the per-set summary with the average row (docs/evaluation.md). The `interir eval` command is interir/evaluate.py;
its tables, files and figure are interir/eval_report.py.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
import torch.nn as nn
from torch import Tensor
from torch.utils.data import Dataset

from interir.errors import InterIRError
from interir.infer import DEFAULT_OVERLAP  # the same default as `interir restore`
from interir.model.inputs import check_finite_output

METRIC_KEYS = ("psnr_input", "ssim_input", "psnr", "ssim")



def load_eval_sets(root: str | Path) -> dict[str, Dataset]:
    """{row name: dataset}: the combinations of an `interir synth` set, or one paired folder."""
    from interir.data.datasets import MANIFEST, PairedFolderDataset, load_synthetic_testset

    root = Path(root)
    if not root.exists():
        raise InterIRError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise InterIRError(f"{root} is a file; give the folder of an `interir synth` set or of input/ and target/")
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
    """Before any work: an InterIRError naming the image when --crop-border would leave less of it than SSIM's
    window (image sizes from the files' headers; images whose header Pillow cannot read are checked when
    evaluated)."""
    from PIL import Image

    from interir.metrics import SSIM_WINDOW

    for set_name, ds in sets.items():
        for i in range(images_to_evaluate(ds, max_images)):
            path = input_file(ds, i)
            try:
                with Image.open(path) as im:
                    w, h = im.size
            except Exception:  # not an image Pillow reads by its header: evaluate_images checks it
                continue
            if min(w, h) - 2 * max(crop_border, 0) < SSIM_WINDOW:
                cropped = f" after --crop-border {crop_border}" if crop_border > 0 else ""
                raise InterIRError(f"the {w}×{h} image {image_name(ds, i)} of set {set_name} is too small to "
                                   f"score{cropped}: SSIM needs at least {SSIM_WINDOW}×{SSIM_WINDOW} pixels")


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
