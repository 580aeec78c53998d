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
output, in docs/evaluation.md. The evaluation itself is interir/eval_core.py; the tables, files, saved images and
figure are interir/eval_report.py.
"""
from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from interir.atomic import check_writable_folder
from interir.data.imageio import IMAGE_EXTENSIONS
from interir.devices import resolve_device
from interir.errors import InterIRError
from interir.validation import seed_arg
from interir.eval_core import ForwardOptions, check_crop_border, evaluate_images, load_eval_sets, summarise, warm_up
from interir.eval_report import (FIGURE_CROP, FIGURE_ROWS, RESULT_FILES, FigureRow, centre_crop, comparison_figure,
                                 figure_keys, format_comparison, format_table, plan_saved_images, save_per_image,
                                 save_restored, save_results, saved_image_path, test_set_files, with_differences)
from interir.infer import DEFAULT_OVERLAP  # the same default as `interir restore`

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoints", nargs="*", metavar="CHECKPOINT",
                        help="weights file or experiment folder (default: the shipped model); two or more: compare "
                             "them (any networks of interir.model) in one table")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="FOLDER", help="an `interir synth` set, or a paired input/target folder")
    src.add_argument("--synthetic", metavar="CLEAN_FOLDER",
                     help="degrade the clean images of this folder under the 7 combinations (seeded) and evaluate")
    parser.add_argument("--seed", type=seed_arg, default=0, help="seed of --synthetic (default 0)")
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
            raise InterIRError(f"--figure {figure} exists; pass --overwrite to replace it, or choose another name")
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
        raise InterIRError(f"{earlier[0]} exists; pass --overwrite to replace it, or choose another --out")
    check_writable_folder(out, "results folder")
    device = resolve_device(args.device)
    models = load_models(checkpoints, labels, device, options)
    with tempfile.TemporaryDirectory(prefix="interir-eval-") as scratch:
        sets = sets_of(args, scratch)
        check_crop_border(sets, args.max_images, args.crop_border)
        inputs = test_set_files(sets)
        for output in ([Path(args.figure)] if args.figure else []) + [out / f for f in RESULT_FILES]:
            if output.resolve() in inputs:
                raise InterIRError(f"{output} is an image of the test set; choose another "
                                   f"{'--figure' if output.suffix.lower() in IMAGE_EXTENSIONS else '--out'}")
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
