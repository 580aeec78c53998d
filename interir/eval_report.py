"""What `interir eval` shows and writes: the markdown tables (with differences to the first model), the result
files (CSV/JSON, atomically), the restored images it saves and the comparison figure (docs/evaluation.md).
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from interir.atomic import atomic_write_text, check_writable_folder, remove_stale_temporaries
from interir.errors import InterIRError
from interir.eval_core import image_name, images_to_evaluate

FIGURE_ROWS = 4  # images shown by --figure (spread over the sets)
FIGURE_CROP = 192  # side of the centre crops of --figure, at most


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


def test_set_files(sets: dict) -> set[Path]:
    """Every input and target file of the evaluated sets, resolved: what no output may replace."""
    sources = set()
    for ds in sets.values():
        for pair in getattr(ds, "pairs", ()):
            sources.update(Path(p).resolve() for p in pair)
    return sources


def plan_saved_images(folder: Path, sets: dict[str, Dataset], max_images: int | None, labels: list[str] | None,
                      overwrite: bool) -> None:
    """Refuse, before any work, outputs that would replace an input or target of the sets, and (unless
    `overwrite`) outputs that already exist. labels: the models' labels when comparing, else None."""
    if folder.exists() and not folder.is_dir():
        raise InterIRError(f"--save-images {folder} exists and is not a folder")
    sources = test_set_files(sets)
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
