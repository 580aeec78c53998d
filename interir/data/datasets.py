"""Datasets: paired folders (benchmarks, synthetic test sets) and on-the-fly multi-degradation training.

    PairedFolderDataset("Rain100H")                 # finds input/target (or hazy/GT, rain-/norain-, ...)
    load_synthetic_testset("out/mdir")              # {"H+R+N": PairedFolderDataset, ...} from `interir synth`
    MultiDegradationDataset("clean/", patch_size=256, seed=0)   # random crop, flips, combination, levels

Items are dicts: "input", "target" (float32 3×H×W in [0, 1]), "name", plus per dataset "combo" and "params"
(numbers only, so torch's default_collate batches them).

Pairing rules (input file → target file, any image extension), tried in order:
  1. same stem                                  Rain13K, Test100, Test2800, Restormer-style input/ & target/
  2. 'rain-'/'rain_' prefix dropped             Rain100H/L: rain-001.png → norain-001.png
  3. stem cut at an underscore, longest first   RESIDE ITS 1_1_0.90179 → 1, OTS/SOTS-out 0001_0.8_0.2 → 0001,
                                                SOTS-in 1400_1 → 1400, DDN Rain1400 1_14 → 1
Target stems are also indexed without a 'norain-'/'norain_' prefix and a '_gt'/'_clean'/'_target' suffix.

Randomness (crops, flips, combinations, levels) comes from one generator per item: with `seed=None` it is
seeded from torch's global generator, which DataLoader seeds differently in every worker and epoch; with an
integer seed it is seeded from (seed, epoch, index), so an epoch is the same whatever the number of
workers (call set_epoch(e) each epoch; with persistent_workers, pass the epoch through the sampler instead).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset

from interir.data.degrade import COMBINATIONS, degrade, mix_seed, parse_combo, sample_levels
from interir.data.imageio import IMAGE_EXTENSIONS, list_images, natural_key, read_image
from interir.errors import InterIRError
from interir.validation import expect_str, relative_inside

MANIFEST = "manifest.jsonl"
INPUT_DIRS = ("input", "inputs", "lq", "hazy", "rain", "rainy", "rainy_image", "degraded", "data")
TARGET_DIRS = ("target", "targets", "gt", "groundtruth", "ground_truth", "clear", "clean", "norain", "label")
_TARGET_PREFIX = re.compile(r"^(norain|clean)[-_]", re.IGNORECASE)
_TARGET_SUFFIX = re.compile(r"[-_](gt|clean|target)$", re.IGNORECASE)
_INPUT_PREFIX = re.compile(r"^rain[-_]", re.IGNORECASE)


# -------------------------------------------------------------------------------------------- pairing


def _index_targets(targets: Sequence[Path]) -> dict[str, Path]:
    """Targets by stem, then (where free) by stem without a norain-/clean- prefix or _gt-like suffix."""
    index: dict[str, Path] = {}
    for t in targets:
        if t.stem in index:
            raise InterIRError(f"two targets share the name {t.stem!r}: {index[t.stem]} and {t}")
        index[t.stem] = t
    for t in targets:
        index.setdefault(_TARGET_SUFFIX.sub("", _TARGET_PREFIX.sub("", t.stem)), t)
    return index


def target_candidates(input_stem: str) -> list[str]:
    """Target stems to try for an input stem, in order (see the module docstring)."""
    out = [input_stem]
    out.append(_INPUT_PREFIX.sub("", input_stem))
    parts = input_stem.split("_")
    out += ["_".join(parts[:k]) for k in range(len(parts) - 1, 0, -1)]
    return [c for c in dict.fromkeys(out) if c]


def match_pairs(inputs: Sequence[Path], targets: Sequence[Path], target_dir: Path | None = None
                ) -> list[tuple[Path, Path]]:
    """Pair every input with its target; an input without a target is an InterIRError naming it."""
    index = _index_targets(targets)
    pairs = []
    for inp in inputs:
        cands = target_candidates(inp.stem)
        hit = next((index[c] for c in cands if c in index), None)
        if hit is None:
            where = target_dir or (targets[0].parent if targets else "the target folder")
            raise InterIRError(f"no target for input {inp} in {where} "
                               f"(looked for {', '.join(cands)} with an image extension)")
        pairs.append((inp, hit))
    return pairs


def find_pair_dirs(root: str | os.PathLike) -> tuple[Path, Path]:
    """The (input, target) sub-folders of a benchmark folder, by their usual names (case-insensitive)."""
    root = Path(root)
    if not root.is_dir():
        raise InterIRError(f"{root} is not a folder" if root.exists() else f"dataset folder not found: {root}")
    subs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    inp = next((subs[n] for n in INPUT_DIRS if n in subs), None)
    tgt = next((subs[n] for n in TARGET_DIRS if n in subs), None)
    if inp is not None and tgt is None and (root.parent / MANIFEST).is_file() and (root.parent / "target").is_dir():
        tgt = root.parent / "target"  # one combination folder of an `interir synth` set
    if inp is None or tgt is None:
        raise InterIRError(f"{root} has no input/target sub-folders (looked for {'/'.join(INPUT_DIRS)} and "
                           f"{'/'.join(TARGET_DIRS)}); rename them, or point at an `interir synth` set")
    return inp, tgt


# ------------------------------------------------------------------------------------------ crop/flip


def random_crop_flip(tensors: Sequence[torch.Tensor], patch_size: int | None, flips: bool,
                     g: torch.Generator) -> list[torch.Tensor]:
    """The same random patch (and horizontal/vertical flips) of several C×H×W tensors of one size."""
    out = list(tensors)
    h, w = out[0].shape[-2:]
    if patch_size:
        if h < patch_size or w < patch_size:
            raise InterIRError(f"image of {w}×{h} is smaller than patch_size {patch_size}")
        top = int(torch.randint(0, h - patch_size + 1, (), generator=g))
        left = int(torch.randint(0, w - patch_size + 1, (), generator=g))
        out = [t[..., top:top + patch_size, left:left + patch_size] for t in out]
    if flips:
        hflip, vflip = (torch.rand(2, generator=g) < 0.5).tolist()
        if hflip:
            out = [t.flip(-1) for t in out]
        if vflip:
            out = [t.flip(-2) for t in out]
    return [t.contiguous() for t in out]


class _Seeded(Dataset):
    """Per-item generator: worker-safe, and reproducible per (seed, epoch, index) when seeded."""

    seed: int | None = None
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _generator(self, index: int) -> torch.Generator:
        if self.seed is None:
            s = int(torch.randint(0, 2**63 - 1, ()))
        else:
            s = mix_seed(self.seed, self.epoch, index)
        return torch.Generator().manual_seed(s)


# ------------------------------------------------------------------------------------- paired folders


class PairedFolderDataset(_Seeded):
    """Degraded/clean pairs from folders.

    root: a folder holding input and target sub-folders (see INPUT_DIRS/TARGET_DIRS), or Rain100-style
        rain-*.png and norain-*.png side by side; or give input_dir and target_dir; or explicit pairs.
    patch_size: random crop size (None: whole images); flips: random h/v flips (training).
    size_mismatch: 'error' (default) or 'crop' (centre-crop the larger of input/target to the smaller,
        as dehazing code does for SOTS indoor, whose ground truths carry a 10-px border).
    meta: optional {input path: dict} merged into items (used for synthetic sets: combo, params).
    """

    def __init__(self, root: str | os.PathLike | None = None, *, input_dir=None, target_dir=None,
                 pairs: Sequence[tuple[Path, Path]] | None = None, patch_size: int | None = None,
                 flips: bool = False, seed: int | None = None, size_mismatch: str = "error",
                 meta: dict[str, dict] | None = None):
        if size_mismatch not in ("error", "crop"):
            raise ValueError("size_mismatch must be 'error' or 'crop'")
        if pairs is None:
            pairs = self._discover(root, input_dir, target_dir)
        self.pairs = [(Path(a), Path(b)) for a, b in pairs]
        if not self.pairs:
            raise InterIRError(f"no image pairs found in {root or input_dir}")
        self.patch_size, self.flips, self.seed = patch_size, flips, seed
        self.size_mismatch, self.meta = size_mismatch, meta or {}

    @staticmethod
    def _discover(root, input_dir, target_dir) -> list[tuple[Path, Path]]:
        if input_dir is None and target_dir is None:
            if root is None:
                raise InterIRError("give a dataset folder, or input_dir and target_dir")
            root = Path(root)
            files = list_images(root) if root.is_dir() else []
            if any(_TARGET_PREFIX.match(p.stem) for p in files):  # Rain100 original layout
                inputs = [p for p in files if _INPUT_PREFIX.match(p.stem)]
                targets = [p for p in files if _TARGET_PREFIX.match(p.stem)]
                return match_pairs(inputs, targets, root)
            input_dir, target_dir = find_pair_dirs(root)
        elif input_dir is None or target_dir is None:
            raise InterIRError("give both input_dir and target_dir")
        return match_pairs(list_images(input_dir), list_images(target_dir), Path(target_dir))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        inp_path, tgt_path = self.pairs[index]
        inp, tgt = read_image(inp_path), read_image(tgt_path)
        if inp.shape != tgt.shape:
            if self.size_mismatch == "error":
                raise InterIRError(f"size mismatch: {inp_path} is {inp.shape[2]}×{inp.shape[1]} but "
                                   f"{tgt_path} is {tgt.shape[2]}×{tgt.shape[1]}")
            inp, tgt = _center_crop_to_common(inp, tgt)
        if self.patch_size or self.flips:
            inp, tgt = random_crop_flip([inp, tgt], self.patch_size, self.flips, self._generator(index))
        item = {"input": inp, "target": tgt, "name": inp_path.stem,
                "input_path": str(inp_path), "target_path": str(tgt_path)}
        item.update(self.meta.get(str(inp_path), {}))
        return item


def _center_crop_to_common(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = min(a.shape[1], b.shape[1]), min(a.shape[2], b.shape[2])

    def crop(t):
        top, left = (t.shape[1] - h) // 2, (t.shape[2] - w) // 2
        return t[:, top:top + h, left:left + w]

    return crop(a), crop(b)


# -------------------------------------------------------------------------------- synthetic test sets


def read_manifest(root: str | os.PathLike) -> list[dict]:
    """The records of an `interir synth` set (root/manifest.jsonl), one dict per degraded image."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise InterIRError(f"not a synthetic test set: no {MANIFEST} in {root} (make one with `interir synth`)")
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise InterIRError(f"{path} line {n}: not a valid manifest record ({exc})") from None
            records.append(_checked_record(rec, f"{path} line {n}"))
    return records


def _checked_record(rec, where: str) -> dict:
    """A manifest record with its required keys of the right types; image paths must stay inside the set."""
    if not isinstance(rec, dict):
        raise InterIRError(f"{where}: not a valid manifest record (expected a JSON object)")
    for key in ("combo", "input", "target"):
        if key not in rec:
            raise InterIRError(f"{where}: not a valid manifest record (no '{key}')")
    try:
        rec["combo"] = parse_combo(expect_str("combo", rec["combo"]))
        for key in ("input", "target"):
            relative_inside(key, rec[key])
    except InterIRError as exc:
        raise InterIRError(f"{where}: {exc}") from None
    return rec


def load_synthetic_testset(root: str | os.PathLike, combos: Sequence[str] | None = None
                           ) -> dict[str, PairedFolderDataset]:
    """{combination: PairedFolderDataset} of a set written by `interir synth`, in COMBINATIONS order.

    Items carry "combo" and "params" (the manifest's numbers: haze, rain, noise, airlight, angle, seed, ...).
    A file listed in the manifest but missing is an InterIRError naming it.
    """
    root = Path(root)
    wanted = None if combos is None else {parse_combo(c) for c in combos}
    groups: dict[str, list] = {}
    meta: dict[str, dict] = {}
    for rec in read_manifest(root):
        combo = rec["combo"]
        if wanted is not None and combo not in wanted:
            continue
        inp, tgt = root / rec["input"], root / rec["target"]
        for p in (inp, tgt):
            if not p.is_file():
                raise InterIRError(f"missing file {p} listed in {root / MANIFEST}")
        groups.setdefault(combo, []).append((inp, tgt))
        params = {k: v for k, v in rec.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        meta[str(inp)] = {"combo": combo, "params": params}
    if not groups:
        raise InterIRError(f"{root / MANIFEST} lists no images" + (f" for {sorted(wanted)}" if wanted else ""))
    order = [c for c in COMBINATIONS if c in groups] + sorted(c for c in groups if c not in COMBINATIONS)
    return {c: PairedFolderDataset(pairs=groups[c], meta=meta) for c in order}


# ---------------------------------------------------------------------------- on-the-fly MDIR training


class MultiDegradationDataset(_Seeded):
    """Training pairs made on the fly from clean images (docs/data.md).

    Each item: a random patch_size crop of a clean image, random h/v flips, a random combination from
    `combos`, levels drawn by sample_levels, then degrade(). len = number of images × repeat.
    root: folder of clean images (or a list of files). ranges: optional level ranges per kind.
    cache: keep decoded images in memory (per worker).
    Items: "input", "target", "name", "combo", "params" (levels, airlight, angle, length, seed, ...).
    """

    def __init__(self, root, patch_size: int | None = 256, *, combos: Sequence[str] = COMBINATIONS,
                 seed: int | None = None, repeat: int = 1, flips: bool = True,
                 ranges: dict[str, tuple[float, float]] | None = None, cache: bool = False):
        if isinstance(root, (str, os.PathLike)):
            self.files = list_images(root)
        else:
            self.files = sorted((Path(p) for p in root), key=lambda p: natural_key(p.name))
        if not self.files:
            raise InterIRError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {root}")
        if repeat < 1:
            raise ValueError("repeat must be ≥ 1")
        self.combos = tuple(parse_combo(c) for c in combos)
        self.patch_size, self.seed, self.repeat, self.flips = patch_size, seed, repeat, flips
        self.ranges, self.cache = ranges, cache
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.files) * self.repeat

    def _clean(self, i: int) -> torch.Tensor:
        if i in self._cache:
            return self._cache[i]
        img = read_image(self.files[i])
        if self.cache:
            self._cache[i] = img
        return img

    def __getitem__(self, index: int) -> dict:
        i = index % len(self.files)
        g = self._generator(index)
        clean = self._clean(i)
        try:
            (clean,) = random_crop_flip([clean], self.patch_size, self.flips, g)
        except InterIRError as exc:
            raise InterIRError(f"{self.files[i]}: {exc}") from None
        combo = self.combos[int(torch.randint(0, len(self.combos), (), generator=g))]
        levels = sample_levels(combo, g, self.ranges)
        degraded, params = degrade(clean, **levels, seed=int(torch.randint(0, 2**63 - 1, (), generator=g)))
        return {"input": degraded, "target": clean, "name": self.files[i].stem, "combo": combo, "params": params}
