"""`interir explain`: what the network does to one image, as PNG figures and a self-contained HTML page.

    interir explain [CHECKPOINT] IMAGE -o OUTDIR [--device auto] [--max-size 512] [--overwrite]
                    [--tsne SYNTH_SET [--tsne-size 256] [--tsne-limit N] [--perplexity 30] [--seed 0]]

OUTDIR receives (N = the number of IPBlocks; K = N + 1 stages):
    index.html                      every figure below with captions (open it in a browser; no network needed)
    input.png, restored.png         the image as processed (downscaled to --max-size) and its restoration
    stages.png, stage_01..K.png     the restored image after every IPBlock, then after the final RESM (= output)
    step_sizes.png                  the learned step size η of every RESM (bar chart, dashed line: initial η)
    masks_01..N.png, masks_final.png          per block: each explainable conv's binary mask (channel mean)
    attention_01..N.png, attention_final.png  per block: each explainable conv's 3×3 tap attention (channel mean)
    attention_summary.png           one 3×3 map per block (mean over its convs) on a shared scale
    tsne.png, tsne.csv              with --tsne: t-SNE of the degradation embeddings, coloured by combination
    explain.json                    the numbers behind the figures (η, mask fractions, attention maps, ...)

A model without explainable convolutions (DGUNet, or InterIR with explainable=False) gets the stage images
(and its step sizes, when it has any); the page says that the mask and attention views do not apply.

The t-SNE embedding of an image is the concatenation, over every explainable conv in forward order, of its
per-channel tap attention A (Cin×3×3, flattened), computed on the image downscaled to --tsne-size.
Why that: A is what the network itself computes from each input to adapt its kernels, i.e. its own
per-sample description of the input, and the object of the paper's interpretability claim; it has the same
length whatever the image size (the mask is pooled to 3×3 regions); keeping it per channel keeps which
features fire where, which the channel-mean heat maps discard. The features are reduced to 50 principal
components and embedded with exact t-SNE (interir.tsne).
"""
from __future__ import annotations

import argparse
import csv
import html
import io
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from interir.atomic import check_writable_folder, remove_stale_temporaries, temp_name
from interir.errors import InterIRError
from interir.validation import seed_arg
from interir.model.inputs import check_finite_output

EXPLAIN_JSON = "explain.json"


# ------------------------------------------------------------------------------------------ data


@dataclass
class ConvView:
    name: str  # module name, e.g. blocks.0.resm.ep0.conv2
    label: str  # e.g. RESM EP0
    attention: Tensor  # Cin×k×k (one sample)
    mask: Tensor  # h×w, fraction of input channels above θ

    @property
    def mean_attention(self) -> Tensor:
        return self.attention.mean(0)

    @property
    def deviation(self) -> float:
        """mean |A − 1| over channels and taps: 0 = uniform attention (no modulation)."""
        return float((self.attention - 1).abs().mean())


@dataclass
class BlockView:
    key: str  # "01" … or "final" (file names)
    label: str  # "IPBlock 1" … "final RESM"
    convs: list[ConvView] = field(default_factory=list)

    @property
    def mean_attention(self) -> Tensor:
        return torch.stack([c.mean_attention for c in self.convs]).mean(0)


@dataclass
class Explanation:
    input: Tensor  # 3×H×W
    output: Tensor  # 3×H×W
    stages: list[Tensor]  # K × 3×H×W, the last is the output
    stage_labels: list[str]
    blocks: list[BlockView]  # empty when the model has no explainable convs
    step_sizes: list[float] | None
    step_labels: list[str]
    eta_init: float | None  # the step sizes' initial value (a reference line), when the model has one
    stage_text: str = ""  # the model's own paragraph on what its stages are (HTML)
    step_text: str = ""  # and on what its step sizes are


def explainable_convs(model) -> list:
    """(name, module) of a network's explainable convs (the protocol of interir.model.protocol)."""
    return model.explainable_convs()


@torch.no_grad()
def explain_image(model, image: Tensor, device: torch.device | str = "cpu") -> Explanation:
    """Run `model` (a network of the zoo: interir.model.protocol) once on a 3×H×W image and collect stages,
    masks, attention and step sizes."""
    convs = explainable_convs(model)
    if convs:
        model.record_explanations(True)
    try:
        out, stages = model(image[None].to(device), return_stages=True)
        check_finite_output(out)
        blocks: dict[str, BlockView] = {}
        for name, mod in convs:
            if mod.last_attention is None or mod.last_mask is None:
                continue
            key, blabel, clabel = model.explanation_group(name)
            blocks.setdefault(key, BlockView(key, blabel)).convs.append(
                ConvView(name, clabel, mod.last_attention[0].float().cpu(), mod.last_mask[0, 0].float().cpu()))
    finally:
        if convs:
            model.record_explanations(False)
    steps = model.step_sizes()
    return Explanation(image.cpu(), out[0].float().cpu().clamp(0, 1), [s[0].float().cpu().clamp(0, 1) for s in stages],
                       model.stage_labels(len(stages)), list(blocks.values()), steps,
                       model.step_labels() if steps is not None else [], model.initial_step_size,
                       model.stage_text, model.step_text)


def resize_max(img: Tensor, max_size: int) -> Tensor:
    """C×H×W downscaled (bicubic, antialiased) so that its longer side is at most max_size (0: unchanged)."""
    h, w = img.shape[-2:]
    if not max_size or max(h, w) <= max_size:
        return img
    s = max_size / max(h, w)
    size = (max(1, round(h * s)), max(1, round(w * s)))
    return F.interpolate(img[None], size=size, mode="bicubic", antialias=True, align_corners=False)[0].clamp(0, 1)


# --------------------------------------------------------------------------------------- embedding


def attention_embedding(model) -> Tensor:
    """The degradation embedding of the last forward: every explainable conv's per-channel attention,
    flattened and concatenated in forward order (requires record_explanations(True))."""
    parts = [mod.last_attention[0].flatten().float().cpu() for _, mod in explainable_convs(model)
             if mod.last_attention is not None]
    if not parts:
        raise InterIRError("this model has no explainable convolutions to embed images with")
    return torch.cat(parts)


@torch.no_grad()
def embed_testset(model, folder: str | os.PathLike, device="cpu", size: int = 256, limit: int | None = None,
                  progress: bool = True) -> tuple[Tensor, list[str], list[str]]:
    """Embed every degraded image of an `interir synth` test set: (n×d features, combinations, names)."""
    from interir.data.datasets import load_synthetic_testset
    from interir.data.imageio import read_image
    from interir.progress import progress as show_progress

    sets = load_synthetic_testset(folder)
    items = [(combo, ds, i) for combo, ds in sets.items() for i in range(min(len(ds), limit or len(ds)))]
    feats, combos, names = [], [], []
    model.record_explanations(True)
    try:
        for combo, ds, i in show_progress(items, desc="embed", unit="img", enabled=progress):
            inp, _ = ds.pairs[i]
            x = resize_max(read_image(inp), size)
            model(x[None].to(device))
            feats.append(attention_embedding(model))
            combos.append(combo)
            names.append(f"{combo}/{inp.stem}")
    finally:
        model.record_explanations(False)
    return torch.stack(feats), combos, names


# ------------------------------------------------------------------------------------------ figures


def _thumb(img: Tensor, max_side: int = 256):
    from interir import figures as fig

    return fig.fit(fig.to_pil(img), max_side) if max(img.shape[-2:]) > max_side else fig.to_pil(img)


def stage_figure(ex: Explanation, thumb: int = 224):
    from interir import figures as fig

    cells = [fig.caption(_thumb(ex.input, thumb), "input")]
    prev = ex.input
    for img, label in zip(ex.stages, ex.stage_labels):
        delta = float((img - prev).abs().mean())
        cells.append(fig.caption(_thumb(img, thumb), f"{label}\nmean |change| {delta:.4f}"))
        prev = img
    return fig.title(fig.grid(cells, ncols=min(len(cells), 6)), "Restored image after every stage")


def mask_figure(block: BlockView, thumb: int = 160):
    from interir import figures as fig

    cells = []
    for c in block.convs:
        img = fig.apply_colormap(c.mask, "viridis", 0.0, 1.0)
        img = fig.fit(img, thumb, resample=fig.Image.Resampling.NEAREST)
        cells.append(fig.caption(img, f"{c.label}\nactive {100 * float(c.mask.mean()):.1f}%"))
    body = fig.vstack([fig.grid(cells, ncols=min(len(cells), 5)),
                       fig.colorbar("viridis", 0, 1, 200, label="fraction of channels > theta")])
    return fig.title(body, f"{block.label}: explainable-conv masks")


def _cell_fmt(dev: float) -> str:
    return "{:.3f}" if dev < 0.05 else "{:.2f}"


def attention_figure(block: BlockView, cell: int = 40):
    from interir import figures as fig

    dev = max(1e-3, max(float((c.mean_attention - 1).abs().max()) for c in block.convs))
    cells = [fig.caption(fig.heatmap(c.mean_attention, cell, "coolwarm", 1 - dev, 1 + dev, _cell_fmt(dev)),
                         f"{c.label}\n|A-1| {c.deviation:.3f}") for c in block.convs]
    body = fig.vstack([fig.grid(cells, ncols=min(len(cells), 5)),
                       fig.colorbar("coolwarm", 1 - dev, 1 + dev, 200, label="attention (1 = uniform)", fmt="{:.3f}")])
    return fig.title(body, f"{block.label}: 3x3 tap attention (mean over input channels)")


def attention_summary_figure(blocks: list[BlockView], cell: int = 40):
    from interir import figures as fig

    means = [b.mean_attention for b in blocks]
    dev = max(1e-3, max(float((m - 1).abs().max()) for m in means))
    cells = [fig.caption(fig.heatmap(m, cell, "coolwarm", 1 - dev, 1 + dev, _cell_fmt(dev)),
                         f"{b.label}\n|A-1| {sum(c.deviation for c in b.convs) / len(b.convs):.3f}")
             for b, m in zip(blocks, means)]
    body = fig.vstack([fig.grid(cells, ncols=min(len(cells), 6)),
                       fig.colorbar("coolwarm", 1 - dev, 1 + dev, 200, label="attention (1 = uniform)", fmt="{:.3f}")])
    return fig.title(body, "Tap attention per block (mean over its explainable convs and channels)")


def step_figure(ex: Explanation):
    from interir import figures as fig

    n = len(ex.step_sizes)
    return fig.bar_chart(ex.step_sizes, ex.step_labels, title="Learned step size per stage",
                         ylabel="eta" if ex.eta_init is not None else "step", size=(max(420, 90 * n + 120), 340),
                         reference=ex.eta_init, reference_label=f"initial eta = {ex.eta_init:g}" if ex.eta_init else "")


# ------------------------------------------------------------------------------------------ output dir


# The only names `explain` ever writes; --overwrite removes an earlier run's files only if they match.
_OWN_FILES = re.compile(r"(index\.html|explain\.json|input\.png|restored\.png|stages\.png|stage_\d{2,}\.png|"
                        r"step_sizes\.png|(masks|attention)_[A-Za-z0-9_]+\.png|tsne\.png|tsne\.csv)")


class OutputDir:
    """Collects files in a private staging folder beside the target and moves them in at the end, so an
    interrupted run leaves the target as it was (a killed run's staging folder is removed by the next run).
    A non-empty target is refused unless overwrite is set; then the files of the previous `explain` are
    replaced: those its explain.json lists that carry a name `explain` writes (the list is not trusted any
    further), and the new ones are moved in (index.html last). Every other file in the target stays."""

    def __init__(self, target: str | os.PathLike, overwrite: bool, inputs=()):
        self.target = Path(target)
        if self.target.exists() and not self.target.is_dir():
            raise InterIRError(f"output {self.target} exists and is not a folder")
        for source in map(Path, inputs):  # an input is never replaced, --overwrite or not
            if source.resolve().parent == self.target.resolve() and _OWN_FILES.fullmatch(source.name):
                raise InterIRError(f"the input {source} lies in {self.target} under a name `explain` writes "
                                   f"({source.name}); choose another output folder")
        if self.target.is_dir() and any(self.target.iterdir()) and not overwrite:
            raise InterIRError(f"output folder {self.target} is not empty; use --overwrite to replace its figures")
        check_writable_folder(self.target.parent if not self.target.exists() else self.target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.target.parent)
        self.staging = self.target.parent / temp_name(self.target.name, suffix="")
        self.staging.mkdir()
        self.files: list[str] = []

    def path(self, name: str) -> Path:
        self.files.append(name)
        return self.staging / name

    def save_png(self, name: str, img) -> None:
        img.save(self.path(name), format="PNG", optimize=True)

    def write_text(self, name: str, text: str) -> None:
        self.path(name).write_text(text, encoding="utf-8")

    def commit(self) -> None:
        if not self.target.exists():
            os.rename(self.staging, self.target)
            return
        if not any(self.target.iterdir()):
            self.target.rmdir()
            os.rename(self.staging, self.target)
            return
        for name in self.previous_files():
            if name not in self.files:
                (self.target / name).unlink(missing_ok=True)
        for name in sorted(self.files, key=lambda n: n == "index.html"):
            os.replace(self.staging / name, self.target / name)
        shutil.rmtree(self.staging, ignore_errors=True)

    def previous_files(self) -> list[str]:
        """Files of the previous run in the target: listed in its explain.json AND named as explain names its
        files AND plain files directly in the target. Anything else the list names is ignored."""
        old = self.target / EXPLAIN_JSON
        try:
            listed = json.loads(old.read_text(encoding="utf-8")).get("files", [])
        except (OSError, ValueError, AttributeError):
            return []
        if not isinstance(listed, list):
            return []
        return [name for name in listed if isinstance(name, str) and _OWN_FILES.fullmatch(name)
                and (self.target / name).is_file() and not (self.target / name).is_symlink()]

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


# ------------------------------------------------------------------------------------------ HTML

_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px
solid #ddd;padding-bottom:.2em}figure{display:inline-block;margin:.6em .6em .6em 0;vertical-align:top}
figure img{max-width:100%;border:1px solid #ddd;image-rendering:auto}figcaption{font-size:.9em;color:#444;
max-width:60em}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .6em;text-align:right}
.note{background:#f6f6f0;border-left:4px solid #cc9;padding:.5em 1em}code{background:#f3f3f3;padding:0 .2em}"""


def _fig(src: str, caption: str, alt: str | None = None) -> str:
    return (f'<figure><img src="{html.escape(src)}" alt="{html.escape(alt or caption)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def build_html(ex: Explanation, info: dict, tsne_info: dict | None) -> str:
    e = html.escape
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>interir explain: {e(info['image_name'])}</title><style>{_CSS}</style></head><body>",
           f"<h1>What the network does to <code>{e(info['image_name'])}</code></h1>",
           f"<p>Checkpoint <code>{e(info['checkpoint'])}</code> ({e(info['model_desc'])}); image processed at "
           f"{info['width']}×{info['height']} pixels{e(info['resized_note'])}.</p>"]
    out += ["<h2>Input and restoration</h2>",
            _fig("input.png", "Input, as processed."), _fig("restored.png", "Restored output.")]
    n = len(ex.stages)
    out += ["<h2>Restored image after every stage</h2>"]
    what = ex.stage_text or f"The image after each of the model's {n} stages; the last is the output."
    out.append(f"<p>{what} <i>mean |change|</i> is the mean absolute change from the previous image (0–1 "
               f"scale).</p>")
    out.append(_fig("stages.png", "All stages side by side."))
    out += [_fig(f"stage_{i + 1:02d}.png", e(label)) for i, label in enumerate(ex.stage_labels)]
    out.append("<h2>Step sizes</h2>")
    if ex.step_sizes is not None:
        what = ex.step_text or "the learned gradient step size of every stage"
        ref = f" The dashed line is the initial value {ex.eta_init:g}." if ex.eta_init is not None else ""
        out.append(_fig("step_sizes.png", f"Bar chart of {what}.{ref}"))
    else:
        out.append('<p class="note">This model exposes no step sizes.</p>')
    out.append("<h2>Explainable convolutions</h2>")
    if ex.blocks:
        out.append("<p>Every EPBlock's 3×3 convolution is an explainable convolution: it thresholds its input at a "
                   "learned θ into a binary mask m = 1[x &gt; θ], pools the mask to 3×3 regions and turns the "
                   "fractions into tap attention A = 9·softmax(p) that scales the shared kernel's taps for this "
                   "input only. The <b>mask</b> panels show, at 1/4 of the image resolution, the fraction of the "
                   "conv's input channels above θ; the <b>attention</b> panels show A averaged over input channels "
                   "(1 = uniform, no modulation; above 1 = tap emphasised) and |A−1|, its mean deviation from "
                   "uniform over channels and taps.</p>")
        out.append(_fig("attention_summary.png", "Per-block summary: mean attention of each block's convs."))
        for b in ex.blocks:
            out.append(f"<h3>{e(b.label)}</h3>")
            out.append(_fig(f"masks_{b.key}.png", f"{e(b.label)}: masks of its {len(b.convs)} explainable convs."))
            out.append(_fig(f"attention_{b.key}.png", f"{e(b.label)}: 3×3 tap attention of its explainable convs."))
    else:
        out.append(f'<p class="note">Not applicable: {e(info["model_desc"])} has no explainable convolutions, so '
                   "there are no masks or attention maps to show (nor a t-SNE of them).</p>")
    if tsne_info is not None:
        out.append("<h2>t-SNE of degradation embeddings</h2>")
        out.append(f"<p>{tsne_info['n']} degraded images of the test set <code>{e(tsne_info['folder'])}</code>, each "
                   "embedded as the concatenated per-channel 3×3 attention of every explainable conv (what the "
                   "network computes from the input to adapt its kernels), reduced to 50 principal components and "
                   f"laid out with exact t-SNE (perplexity {tsne_info['perplexity']:.3g}, seed {tsne_info['seed']}). "
                   f"Colour: degradation combination. Nearest-neighbour agreement of the combination labels: "
                   f"{tsne_info['nn_agreement_2d']:.2f} in the map, {tsne_info['nn_agreement_features']:.2f} in the "
                   f"embedding space (chance ≈ {tsne_info['chance']:.2f}).</p>")
        out.append(_fig("tsne.png", "t-SNE of the degradation embeddings; coordinates are in <code>tsne.csv</code>.",
                        alt="t-SNE of the degradation embeddings"))
    out.append(f"<p>The numbers behind these figures are in <a href=\"{EXPLAIN_JSON}\">{EXPLAIN_JSON}</a>.</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="[CHECKPOINT] IMAGE",
                        help="the image to explain (PNG, JPEG, TIFF, ...), after the weights (.safetensors) or "
                             "experiment folder to explain it with (default: the shipped small model)")
    parser.add_argument("-c", "--checkpoint", default=None,
                        help="weights or experiment folder (instead of giving it before the image)")
    parser.add_argument("-o", "--output", metavar="OUTDIR", help="folder for the figures and index.html (required)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--max-size", type=int, default=512,
                        help="downscale the image so its longer side is at most this (0 = full size; default 512)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty OUTDIR, replacing its figures")
    parser.add_argument("--tsne", metavar="FOLDER",
                        help="also draw the t-SNE of degradation embeddings of an `interir synth` test set")
    parser.add_argument("--tsne-size", type=int, default=256,
                        help="longer side the test images are downscaled to before embedding (default 256)")
    parser.add_argument("--tsne-limit", type=int, default=0,
                        help="at most this many images per combination (default 0: all)")
    parser.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (default 30)")
    parser.add_argument("--seed", type=seed_arg, default=0, help="t-SNE seed (default 0)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from interir.checkpoint import load_model, resolve_weights, shipped_checkpoint
    from interir.data.imageio import IMAGE_EXTENSIONS, load_image
    from interir.devices import resolve_device

    if len(args.paths) > 2 or (len(args.paths) == 2 and args.checkpoint):
        raise InterIRError("give one image, after at most one checkpoint: interir explain [CHECKPOINT] IMAGE -o OUTDIR")
    checkpoint, image = (args.paths if len(args.paths) == 2 else (args.checkpoint, args.paths[0]))
    if checkpoint and Path(checkpoint).suffix.lower() in IMAGE_EXTENSIONS:
        raise InterIRError(f"give one image, after at most one checkpoint: {checkpoint} and {image} are both images "
                           "(interir explain [CHECKPOINT] IMAGE -o OUTDIR)")
    if not args.output:
        raise InterIRError("give an output folder with -o OUTDIR")
    if args.max_size < 0 or 0 < args.max_size < 16:
        raise InterIRError(f"--max-size must be 0 (full size) or at least 16, got {args.max_size}")
    if args.tsne and args.tsne_size < 16:
        raise InterIRError(f"--tsne-size must be at least 16, got {args.tsne_size}")
    if args.tsne_limit < 0:
        raise InterIRError(f"--tsne-limit must be ≥ 0, got {args.tsne_limit}")
    if not 0 < args.perplexity < float("inf"):  # NaN too
        raise InterIRError(f"--perplexity must be a positive number, got {args.perplexity}")
    ckpt = resolve_weights(checkpoint) if checkpoint else shipped_checkpoint()  # reported before any work
    img_path = Path(image)
    if not img_path.is_file():
        raise InterIRError(f"image not found: {img_path}")
    if args.tsne:
        from interir.data.datasets import read_manifest

        read_manifest(args.tsne)  # not a test set: fail now, not after the figures
    out = OutputDir(args.output, args.overwrite, inputs=[img_path])
    try:
        device = resolve_device(args.device)
        model, meta = load_model(ckpt, device)
        if args.tsne and not explainable_convs(model):
            raise InterIRError("--tsne embeds images by their explainable-conv attention, and this model has "
                               "no explainable convolutions")
        full, _ = load_image(img_path)  # 3×H×W: grey repeated, alpha dropped
        img = resize_max(full, args.max_size)
        ex = explain_image(model, img, device)
        spec = meta.get("model", {})
        desc = f"{spec.get('name', type(model).__name__)} preset {spec.get('preset', '?')}"
        info = {"image_name": img_path.name, "checkpoint": str(ckpt), "model_desc": desc,
                "width": img.shape[2], "height": img.shape[1],
                "resized_note": (f" (downscaled from {full.shape[2]}×{full.shape[1]} by --max-size)"
                                 if img.shape != full.shape else "")}
        tsne_info = _run_tsne(model, args, device, out) if args.tsne else None
        _write_figures(ex, out)
        files = out.files + [EXPLAIN_JSON, "index.html"]
        out.write_text(EXPLAIN_JSON, json.dumps(_summary(ex, info, meta, tsne_info, files), indent=1))
        out.write_text("index.html", build_html(ex, info, tsne_info))
        out.commit()
    except BaseException:
        out.abort()
        raise
    print(f"wrote {len(out.files)} files to {out.target}; open {out.target / 'index.html'}")
    return 0


def _write_figures(ex: Explanation, out: OutputDir) -> None:
    from interir import figures as fig

    out.save_png("input.png", fig.to_pil(ex.input))
    out.save_png("restored.png", fig.to_pil(ex.output))
    out.save_png("stages.png", stage_figure(ex))
    for i, img in enumerate(ex.stages):
        out.save_png(f"stage_{i + 1:02d}.png", fig.to_pil(img))
    if ex.step_sizes is not None:
        out.save_png("step_sizes.png", step_figure(ex))
    for b in ex.blocks:
        out.save_png(f"masks_{b.key}.png", mask_figure(b))
        out.save_png(f"attention_{b.key}.png", attention_figure(b))
    if ex.blocks:
        out.save_png("attention_summary.png", attention_summary_figure(ex.blocks))


def _run_tsne(model, args, device, out: OutputDir) -> dict:
    from interir import figures as fig
    from interir.data.degrade import COMBINATIONS
    from interir.tsne import neighbour_agreement, tsne

    feats, combos, names = embed_testset(model, args.tsne, device, args.tsne_size, args.tsne_limit or None,
                                         progress=not args.quiet)
    n = feats.shape[0]
    if n < 4:
        raise InterIRError(f"--tsne needs at least 4 images, {args.tsne} has {n}")
    perplexity = min(args.perplexity, max(1.0, (n - 1) / 3))
    y = tsne(feats, perplexity=perplexity, seed=args.seed)
    kinds = sorted(set(combos))
    out.save_png("tsne.png", fig.scatter(y, combos, order=[c for c in COMBINATIONS if c in kinds],
                                         title="t-SNE of degradation embeddings (explainable-conv attention)"))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "combo", "x", "y"])
    w.writerows([nm, c, f"{p[0]:.6g}", f"{p[1]:.6g}"] for nm, c, p in zip(names, combos, y.tolist()))
    out.write_text("tsne.csv", buf.getvalue())
    return {"folder": str(args.tsne), "n": n, "dims": int(feats.shape[1]), "perplexity": perplexity,
            "seed": args.seed, "nn_agreement_2d": neighbour_agreement(y, combos),
            "nn_agreement_features": neighbour_agreement(feats, combos),
            "chance": sum((combos.count(c) - 1) / (n - 1) * combos.count(c) / n for c in kinds)}


def _summary(ex: Explanation, info: dict, meta: dict, tsne_info: dict | None, files: list[str]) -> dict:
    return {
        "image": info["image_name"], "checkpoint": info["checkpoint"], "model": meta.get("model"),
        "size": [info["height"], info["width"]],
        "stages": [{"label": lab, "file": f"stage_{i + 1:02d}.png"} for i, lab in enumerate(ex.stage_labels)],
        "step_sizes": ex.step_sizes, "step_labels": ex.step_labels, "eta_init": ex.eta_init,
        "blocks": [{"label": b.label, "key": b.key, "convs": [
            {"name": c.name, "label": c.label, "mask_active_fraction": float(c.mask.mean()),
             "attention_deviation": c.deviation,
             "attention_mean": [[round(v, 6) for v in row] for row in c.mean_attention.tolist()]}
            for c in b.convs]} for b in ex.blocks],
        "explainable": bool(ex.blocks), "tsne": tsne_info, "files": files,
    }
