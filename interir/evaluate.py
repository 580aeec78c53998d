"""`interir eval`: the paper's Table 1 for a checkpoint — PSNR/SSIM per degradation combination + average.

    interir eval experiments/mdir_small --data testsets/mdir        # a set written by `interir synth`
    interir eval model.safetensors --synthetic photos/ --seed 0     # build the 7-combination set on the fly
    interir eval model.safetensors --data Rain100L --y-channel      # a paired folder: one row

Metrics follow docs/model.md (interir.metrics: BasicSR's rounding, RGB by default, the Y channel for deraining).
Each row also gives the degraded input's PSNR/SSIM, so the gain is visible. Results are printed and saved
as results.csv and results.json (atomically) in --out.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from interir.atomic import atomic_write_text, check_writable_folder
from interir.devices import resolve_device
from interir.errors import InterIRError
from interir.model.inputs import check_finite_output


def load_eval_sets(root: str | Path) -> dict[str, Dataset]:
    """{row name: dataset}: the combinations of an `interir synth` set, or one paired folder."""
    from interir.data.datasets import MANIFEST, PairedFolderDataset, load_synthetic_testset

    root = Path(root)
    if not root.exists():
        raise InterIRError(f"dataset folder not found: {root}")
    if (root / MANIFEST).is_file():
        return load_synthetic_testset(root)
    return {root.name: PairedFolderDataset(root)}


@torch.no_grad()
def evaluate_sets(model: nn.Module, sets: dict[str, Dataset], device: torch.device | str = "cpu", *,
                  y_channel: bool = False, crop_border: int = 0, max_images: int | None = None,
                  progress: bool = True) -> list[dict[str, Any]]:
    """One row per set {name, images, psnr_input, ssim_input, psnr, ssim} and a final 'average' row
    (the mean of the set rows, as the paper's Table 1 averages its seven test sets)."""
    from interir.metrics import psnr, ssim
    from interir.progress import progress as show_progress

    device = torch.device(device)
    was_training = model.training
    model.eval()
    rows = []
    total = sum(min(len(ds), max_images or len(ds)) for ds in sets.values())
    bar = show_progress(total=total, desc="eval", unit="img", enabled=progress)
    try:
        for name, ds in sets.items():
            n = min(len(ds), max_images or len(ds))
            sums = dict(psnr_input=0.0, ssim_input=0.0, psnr=0.0, ssim=0.0)
            for i in range(n):
                item = ds[i]
                degraded, clean = item["input"], item["target"]
                restored = check_finite_output(model(degraded[None].to(device)).float().cpu()[0]).clamp(0, 1)
                kw = dict(crop_border=crop_border, test_y_channel=y_channel)
                sums["psnr_input"] += psnr(degraded, clean, **kw)
                sums["ssim_input"] += ssim(degraded, clean, **kw)
                sums["psnr"] += psnr(restored, clean, **kw)
                sums["ssim"] += ssim(restored, clean, **kw)
                bar.update(1)
            rows.append({"set": name, "images": n, **{k: v / max(n, 1) for k, v in sums.items()}})
    finally:
        bar.close()
        model.train(was_training)
    keys = ("psnr_input", "ssim_input", "psnr", "ssim")
    rows.append({"set": "average", "images": sum(r["images"] for r in rows),
                 **{k: sum(r[k] for r in rows) / len(rows) for k in keys}})
    return rows


def format_table(rows: list[dict[str, Any]], colour_space: str) -> str:
    """Markdown table of `evaluate_sets` rows."""
    lines = [f"| set | images | input PSNR / SSIM | restored PSNR / SSIM | gain dB |  ({colour_space})",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['images']} | {r['psnr_input']:.2f} / {r['ssim_input']:.4f} | "
                     f"{r['psnr']:.2f} / {r['ssim']:.4f} | {r['psnr'] - r['psnr_input']:+.2f} |")
    return "\n".join(lines)


RESULT_FILES = ("results.csv", "results.json")


def save_results(out: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "results.csv", buf.getvalue())
    atomic_write_text(out / "results.json", json.dumps({**meta, "rows": rows}, indent=2))


# ------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="weights file or experiment folder (default: the shipped model)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="FOLDER", help="an `interir synth` set, or a paired input/target folder")
    src.add_argument("--synthetic", metavar="CLEAN_FOLDER",
                     help="degrade the clean images of this folder under the 7 combinations (seeded) and evaluate")
    parser.add_argument("--seed", type=int, default=0, help="seed of --synthetic (default 0)")
    parser.add_argument("--y-channel", action="store_true", help="metrics on BT.601 Y (deraining); default RGB")
    parser.add_argument("--crop-border", type=int, default=0, help="pixels cropped from each edge before metrics")
    parser.add_argument("--max-images", type=int, default=None, help="at most this many images per set")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--out", default=None, help="folder for results.csv/json (default eval_<checkpoint name>)")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")


def run(args: argparse.Namespace) -> int:
    from interir.checkpoint import load_model

    if args.crop_border < 0 or (args.max_images is not None and args.max_images < 1):
        raise InterIRError("--crop-border must be ≥ 0 and --max-images ≥ 1")
    name = Path(args.checkpoint).stem if args.checkpoint else "shipped"
    out = Path(args.out or f"eval_{name}")
    earlier = [out / f for f in RESULT_FILES if (out / f).exists()]
    if earlier and not args.overwrite:
        raise InterIRError(f"{earlier[0]} exists from an earlier evaluation; pass --overwrite to replace it, or "
                           f"choose another --out")
    check_writable_folder(out, "results folder")
    device = resolve_device(args.device)
    model, meta = load_model(args.checkpoint, device)
    with tempfile.TemporaryDirectory(prefix="interir-eval-") as tmp:
        if args.synthetic:
            from interir.data.synth import build_testset

            if not Path(args.synthetic).is_dir():
                raise InterIRError(f"--synthetic needs a folder of clean images, got {args.synthetic}")
            build_testset(args.synthetic, tmp, seed=args.seed, progress=True)
            sets = load_eval_sets(tmp)
        else:
            sets = load_eval_sets(args.data)
        rows = evaluate_sets(model, sets, device, y_channel=args.y_channel, crop_border=args.crop_border,
                             max_images=args.max_images)
    space = "Y" if args.y_channel else "RGB"
    print(format_table(rows, space))
    save_results(out, rows, {"checkpoint": str(args.checkpoint or "shipped"), "model": meta["model"],
                             "data": args.data or f"synthetic:{args.synthetic}:seed{args.seed}",
                             "colour_space": space, "crop_border": args.crop_border})
    print(f"saved {out / 'results.csv'} and {out / 'results.json'}")
    return 0
