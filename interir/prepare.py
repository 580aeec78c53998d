"""`interir prepare`: standard benchmarks downloaded by hand, put into the paired layout (docs/datasets.md).

    interir prepare --list                                            # the NAMEs and the layouts they expect
    interir prepare Rain100H ~/Downloads/Datasets data/Rain100H [--link]
    interir prepare deraining ~/Downloads/Datasets data/derain         # every deraining set found: DST/<set>/
    interir prepare SOTS-indoor ~/Downloads/SOTS data/SOTS-indoor
    interir prepare CBSD68 ~/Downloads/CBSD68 data/CBSD68 --sigma 15,25,50 --seed 0   # DST/sigma15/, ...

A paired set is a folder holding input/ and target/ whose files pair by stem (input/x.png ↔ target/x.png):
what interir.data.PairedFolderDataset, `interir eval --data` and `datasets.train.type: paired` read. SRC is
checked completely before anything is written; the sets are built in a staging folder beside DST and moved in
only when every file is there, so an interrupted run leaves DST as it was.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from interir.atomic import atomic_write_text, fsync_dir, staged_set
from interir.data.datasets import _INPUT_PREFIX, _TARGET_PREFIX, INPUT_DIRS, TARGET_DIRS, _index_targets
from interir.data.datasets import target_candidates
from interir.data.degrade import GENERATOR_VERSION, degrade, mix_seed
from interir.data.imageio import list_images, load_image, quantize, write_image
from interir.errors import InterIRError
from interir.validation import seed_arg
from interir.progress import progress as show_progress

RECORD = "prepare.json"  # what was made, from what, with which noise settings
DEFAULT_SIGMAS = (15.0, 25.0, 50.0)
MAX_NAMED = 3  # file names shown in an error line before "..."
AS_IS_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")  # lossless formats a clean image is copied in as it is


@dataclass(frozen=True)
class Spec:
    """One NAME: its family, the size of the official set and where its folder may lie under SRC."""

    name: str
    family: str  # "derain", "sots", "denoise" or "bundle"
    official: int  # images (deraining: pairs, SOTS: hazy images) in the official set; only for a note
    where: tuple[str, ...]  # folders under SRC tried in order (single sets try SRC itself first)
    gray: bool = False


def _rain(name: str, split: str, official: int) -> Spec:
    return Spec(name, "derain", official, (name, f"{split}/{name}", f"Datasets/{split}/{name}",
                                           f"Synthetic_Rain_Datasets/{split}/{name}"))


def _noise(name: str, official: int, *aliases: str, gray: bool = False) -> Spec:
    names = (name, *aliases)
    where = tuple(f"{top}{n}" for top in ("", "test/", "Datasets/test/", "testsets/") for n in names)
    return Spec(name, "denoise", official, where, gray)


DERAIN_SETS = (_rain("Rain13K", "train", 13712), _rain("Rain100L", "test", 100), _rain("Rain100H", "test", 100),
               _rain("Test100", "test", 100), _rain("Test1200", "test", 1200), _rain("Test2800", "test", 2800))
SPECS: tuple[Spec, ...] = (
    *DERAIN_SETS,
    Spec("deraining", "bundle", 0, ()),
    Spec("SOTS-indoor", "sots", 500, ("indoor/nyuhaze500", "indoor", "nyuhaze500", "SOTS/indoor/nyuhaze500",
                                      "SOTS/indoor")),
    Spec("SOTS-outdoor", "sots", 500, ("outdoor", "SOTS/outdoor")),
    _noise("BSD68", 68, gray=True), _noise("CBSD68", 68), _noise("Urban100", 100), _noise("Kodak24", 24, "Kodak"),
    _noise("McMaster", 18),
)


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def lookup(name: str) -> Spec:
    """The Spec of a NAME, case and punctuation ignored (sots_indoor, SOTS-indoor); Kodak is Kodak24."""
    keys = {_key(s.name): s for s in SPECS}
    keys["kodak"] = keys["kodak24"]
    spec = keys.get(_key(name))
    if spec is None:
        raise InterIRError(f"unknown dataset {name!r}; known: {', '.join(s.name for s in SPECS)} "
                           f"(interir prepare --list shows their layouts)")
    return spec


# ------------------------------------------------------------------------------------------- --list


def _describe(spec: Spec) -> tuple[str, str, str]:
    """(what it is, the SRC layout expected, what DST gets) for --list."""
    if spec.family == "derain":
        original = spec.name in ("Rain100L", "Rain100H")
        return (f"deraining {'training' if spec.name == 'Rain13K' else 'test'} set, {spec.official:,} pairs",
                "input/ + target/ (MPRNet/Restormer download)"
                + (", or rain-NNN.png + norain-NNN.png in one folder (original release)" if original else ""),
                "DST/input/ + DST/target/")
    if spec.family == "bundle":
        return (f"all of {', '.join(s.name for s in DERAIN_SETS)} found",
                "the MPRNet/Restormer Datasets/ folder: train/Rain13K/ and test/<set>/, each input/ + target/",
                "DST/<set>/input/ + DST/<set>/target/ for each set found")
    if spec.family == "sots":
        return (f"RESIDE SOTS dehazing test set, {spec.official} hazy images",
                "hazy/ + gt/ (or clear/): hazy 1400_1.png / 0001_0.8_0.2.jpg pairs with gt 1400.png / 0001.png",
                "DST/input/ + DST/target/: one target per hazy image, a larger gt centre-cropped to it (PNG)")
    return (f"Gaussian denoising, {spec.official} {'grayscale' if spec.gray else 'colour'} images",
            "a folder of clean images",
            "DST/sigma<σ>/input/ (noisy, PNG) + DST/sigma<σ>/target/ (clean) for each --sigma")


def list_text() -> str:
    """What `interir prepare --list` prints: every NAME with the SRC layout it expects and the DST it makes."""
    lines = []
    for spec in SPECS:
        what, layout, dst = _describe(spec)
        found = ", ".join(["SRC", *(f"SRC/{w}" for w in spec.where)]) if spec.where else \
            "SRC/<set>, SRC/{train,test}/<set>, and the same under SRC/Datasets/ or SRC/Synthetic_Rain_Datasets/"
        lines += [f"{spec.name}: {what}", f"    SRC:      {layout}", f"    found at: {found}", f"    DST:      {dst}"]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ planning


@dataclass(frozen=True)
class Item:
    """One file of DST at `rel`: `source` copied or hard-linked as it is, or, with `make`, the pixels make()
    returns (made from `source`) written as a PNG."""

    rel: str
    source: Path
    make: Callable[[], np.ndarray] | None = None


@dataclass
class Plan:
    """Everything one command will write, found complete before anything is written."""

    name: str
    sets: dict[str, int]  # set folder inside DST ("" for DST itself) → pairs
    items: list[Item]
    parts: list[str]  # the top-level entries of DST written (and replaced under --force)
    notes: list[str] = field(default_factory=list)
    record: dict = field(default_factory=dict)


def _child(folder: Path, name: str) -> Path | None:
    """folder/name, the name matched case-insensitively (one or more parts); None when absent."""
    here = folder
    for part in Path(name).parts:
        if not here.is_dir():
            return None
        exact = here / part
        if exact.is_dir():
            here = exact
            continue
        here = next((p for p in sorted(here.iterdir()) if p.is_dir() and p.name.lower() == part.lower()), None)
        if here is None:
            return None
    return here


def _first_child(folder: Path, names: Sequence[str]) -> Path | None:
    return next((c for c in (_child(folder, n) for n in names) if c is not None), None)


def _locate(spec: Spec, src: Path, looks_right: Callable[[Path], bool], itself: bool = True) -> Path | None:
    """The first of SRC (when `itself`) and SRC/<where> that looks like the set's folder."""
    candidates = ([src] if itself else []) + [_child(src, w) for w in spec.where]
    return next((c for c in candidates if c is not None and looks_right(c)), None)


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:MAX_NAMED])
    return shown + (", ..." if len(names) > MAX_NAMED else "")


def _missing(set_name: str, where: str, names: Sequence[str], total: int) -> str:
    return f"{set_name}: {where} missing {len(names)} of {total} images: {_names(names)}"


def _duplicates(set_name: str, where: str, files: Sequence[Path], name_of: Callable[[Path], str]) -> list[str]:
    """One problem line per name that two files of `where` would share in DST."""
    groups: dict[str, list[Path]] = {}
    for f in files:
        groups.setdefault(name_of(f), []).append(f)
    return [f"{set_name}: {where} has {len(fs)} images named {n!r}: {_names([f.name for f in fs])}"
            for n, fs in groups.items() if len(fs) > 1]


def _count_note(spec: Spec, count: int, what: str) -> list[str]:
    if spec.official and count != spec.official:
        return [f"{spec.name} has {count} {what}; the official set has {spec.official}"]
    return []


# ------------------------------------------------------------------------------------------- deraining


def _rain_dirs(folder: Path) -> tuple[Path | None, Path | None]:
    """The input and target sub-folders (the names interir.data.datasets knows), either None when absent."""
    return _first_child(folder, INPUT_DIRS), _first_child(folder, TARGET_DIRS)


def _looks_like_rain_set(folder: Path) -> bool:
    if any(d is not None for d in _rain_dirs(folder)):
        return True
    return any(_INPUT_PREFIX.match(p.stem) or _TARGET_PREFIX.match(p.stem) for p in list_images(folder))


def _counterpart(lonely: Path, other: Sequence[Path], to_target: bool, swap: bool) -> str:
    """The file name `lonely` would pair with on the other side: rain-7.png ↔ norain-7.png where that side
    uses the prefix (or `swap`), else the same name."""
    if to_target and _INPUT_PREFIX.match(lonely.stem) and (swap or any(_TARGET_PREFIX.match(p.stem) for p in other)):
        return "no" + lonely.name
    if not to_target and lonely.stem.lower().startswith("norain") and (
            swap or any(_INPUT_PREFIX.match(p.stem) for p in other)):
        return lonely.name[2:]
    return lonely.name


def _rain_pairs(set_name: str, folder: Path) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """(name in DST, input, target) of one deraining set folder, and the problems that stop it."""
    inp_dir, tgt_dir = _rain_dirs(folder)
    one_folder = inp_dir is None and tgt_dir is None
    if one_folder:  # the original Rain100L/H: rain-001.png and norain-001.png side by side
        files = list_images(folder)
        inputs = [p for p in files if _INPUT_PREFIX.match(p.stem)]
        targets = [p for p in files if _TARGET_PREFIX.match(p.stem)]
        where = ("rain-*", "norain-*")
    else:
        for d, what in ((inp_dir, "input/"), (tgt_dir, "target/")):
            if d is None:
                return [], [f"{set_name}: {folder} has no {what} folder"]
        inputs, targets = list_images(inp_dir), list_images(tgt_dir)
        where = ("input/", "target/")
    if not inputs:
        return [], [f"{set_name}: no images in {inp_dir or folder}" + (" named rain-*" if one_folder else "")]
    name_of = (lambda p: _INPUT_PREFIX.sub("", p.stem)) if one_folder else (lambda p: p.stem)
    problems = _duplicates(set_name, where[0], inputs, name_of)
    try:
        index = _index_targets(targets)
    except InterIRError as exc:
        return [], [f"{set_name}: {exc}"]
    pairs, lonely = [], []
    for inp in inputs:
        hit = next((index[c] for c in target_candidates(inp.stem) if c in index), None)
        if hit is None:
            lonely.append(_counterpart(inp, targets, True, one_folder))
        else:
            pairs.append((name_of(inp), inp, hit))
    if lonely:
        problems.append(_missing(set_name, where[1], lonely, len(inputs)))
    used = {t for _, _, t in pairs}
    unpaired = [_counterpart(t, inputs, False, one_folder) for t in targets if t not in used]
    if unpaired:
        problems.append(_missing(set_name, where[0], unpaired, len(targets)))
    _, bad = _sizes([p for _, inp, tgt in pairs for p in (inp, tgt)])  # headers only: a 0-byte or broken file
    if bad:
        problems.append(f"{set_name}: cannot read {len(bad)} images: {_names(bad)}")
    return pairs, problems


def _rain_items(pairs: Sequence[tuple[str, Path, Path]], prefix: str) -> list[Item]:
    items = []
    for name, inp, tgt in pairs:
        items += [Item(f"{prefix}input/{name}{inp.suffix}", inp), Item(f"{prefix}target/{name}{tgt.suffix}", tgt)]
    return items


def plan_derain(spec: Spec, src: Path) -> Plan:
    """One deraining set: DST/input/ + DST/target/, files paired by the project's rules, renamed to one stem."""
    folder = _locate(spec, src, _looks_like_rain_set)
    if folder is None:
        raise InterIRError(f"{spec.name}: no set found in {src} (looked in SRC and {_tried(spec)}); expected "
                           f"input/ and target/ folders" + (", or rain-*.png with norain-*.png"
                                                            if spec.name in ("Rain100L", "Rain100H") else ""))
    pairs, problems = _rain_pairs(spec.name, folder)
    _stop(problems)
    return Plan(spec.name, {"": len(pairs)}, _rain_items(pairs, ""), ["input", "target"],
                _count_note(spec, len(pairs), "pairs"), {"read_from": {spec.name: str(folder.resolve())}})


def plan_deraining(src: Path) -> Plan:
    """Every deraining set found under an MPRNet/Restormer Datasets/ folder: DST/<set>/input/ + target/."""
    found = {s: _locate(s, src, _looks_like_rain_set, itself=False) for s in DERAIN_SETS}
    found = {s: f for s, f in found.items() if f is not None}
    if not found:
        raise InterIRError(f"deraining: none of {', '.join(s.name for s in DERAIN_SETS)} found in {src} "
                           f"(expected train/Rain13K/ and test/<set>/, each with input/ and target/)")
    problems, items, sets, notes = [], [], {}, []
    for spec, folder in found.items():
        pairs, errs = _rain_pairs(spec.name, folder)
        problems += errs
        items += _rain_items(pairs, f"{spec.name}/")
        sets[spec.name] = len(pairs)
        notes += _count_note(spec, len(pairs), "pairs")
    _stop(problems)
    absent = [s.name for s in DERAIN_SETS if s not in found]
    if absent:
        notes.append(f"not found in {src}, so not made: {', '.join(absent)}")
    return Plan("deraining", sets, items, list(sets), notes,
                {"read_from": {s.name: str(f.resolve()) for s, f in found.items()}})


def _tried(spec: Spec) -> str:
    return ", ".join(f"SRC/{w}" for w in spec.where)


def _stop(problems: Sequence[str]) -> None:
    """Raise one line naming every problem found in SRC (nothing has been written yet)."""
    if problems:
        raise InterIRError("; ".join(problems) + " (nothing was written)")


# ---------------------------------------------------------------------------------------------- SOTS


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) as interir.data.imageio reads the image, from its header (EXIF 5–8 swap them)."""
    with Image.open(path) as im:
        w, h = im.size
        if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
            w, h = h, w
    return w, h


def _sizes(paths: Sequence[Path]) -> tuple[dict[Path, tuple[int, int]], list[str]]:
    """Header sizes of the images, and the names of those whose header cannot be read."""
    sizes, bad = {}, []
    for p in dict.fromkeys(paths):
        try:
            sizes[p] = _image_size(p)
        except Exception:  # Pillow raises many types for broken files
            bad.append(p.name)
    return sizes, bad


def _pixels(path: Path) -> np.ndarray:
    """The image's own channels and bit depth as an H×W×C integer array (what read_image scales to [0, 1])."""
    img, bits = load_image(path, channels=None)
    return quantize(img, bits)


def _centre_crop(read: Callable[[Path], np.ndarray], path: Path, height: int, width: int) -> np.ndarray:
    """The centre height×width of an image, as PairedFolderDataset(size_mismatch='crop') crops it."""
    arr = read(path)
    top, left = (arr.shape[0] - height) // 2, (arr.shape[1] - width) // 2
    return arr[top:top + height, left:left + width]


def _looks_like_sots(folder: Path) -> bool:
    return _child(folder, "hazy") is not None


def plan_sots(spec: Spec, src: Path) -> Plan:
    """SOTS indoor or outdoor: each hazy image with its clear image (the id before the first underscore);
    the target gets the hazy image's stem, and a clear image larger than its hazy one is centre-cropped."""
    folder = _locate(spec, src, _looks_like_sots)
    if folder is None:
        raise InterIRError(f"{spec.name}: no hazy/ folder in {src} (looked in SRC and {_tried(spec)})")
    hazy_dir, gt_dir = _child(folder, "hazy"), _first_child(folder, ("gt", "clear"))
    if gt_dir is None:
        raise InterIRError(f"{spec.name}: {folder} has hazy/ but no gt/ (or clear/) folder (nothing was written)")
    hazy, clear = list_images(hazy_dir), list_images(gt_dir)
    if not hazy:
        raise InterIRError(f"{spec.name}: no images in {hazy_dir} (nothing was written)")
    problems = _duplicates(spec.name, f"{gt_dir.name}/", clear, lambda p: p.stem)
    problems += _duplicates(spec.name, "hazy/", hazy, lambda p: p.stem)
    by_id = {p.stem: p for p in clear}
    ids = list(dict.fromkeys(h.stem.split("_")[0] for h in hazy))
    ext = Counter(p.suffix for p in clear).most_common(1)[0][0] if clear else ".png"
    lonely = [i + ext for i in ids if i not in by_id]
    if lonely:
        problems.append(_missing(spec.name, f"{gt_dir.name}/", lonely, len(ids)))
    wanted = set(ids)
    unused = [p.name for p in clear if p.stem not in wanted]
    if unused:
        problems.append(f"{spec.name}: hazy/ has no image for {len(unused)} of {len(clear)} clear images: "
                        f"{_names(unused)}")
    _stop(problems)
    pairs = [(h, by_id[h.stem.split("_")[0]]) for h in hazy]
    sizes, bad = _sizes([p for pair in pairs for p in pair])
    if bad:
        _stop([f"{spec.name}: cannot read {len(bad)} images: {_names(bad)}"])
    items, smaller = [], []
    read = functools.lru_cache(maxsize=2)(_pixels)  # the hazy images of one clear image come one after another
    for h, g in pairs:
        (hw, hh), (gw, gh) = sizes[h], sizes[g]
        items.append(Item(f"input/{h.name}", h))
        if (gw, gh) == (hw, hh):
            items.append(Item(f"target/{h.stem}{g.suffix}", g))
        elif gw >= hw and gh >= hh:
            items.append(Item(f"target/{h.stem}.png", g, functools.partial(_centre_crop, read, g, hh, hw)))
        else:
            smaller.append(f"{g.name} ({gw}×{gh}) < {h.name} ({hw}×{hh})")
    if smaller:
        _stop([f"{spec.name}: {len(smaller)} clear images are smaller than their hazy image: {_names(smaller)}"])
    return Plan(spec.name, {"": len(pairs)}, items, ["input", "target"],
                _count_note(spec, len(pairs), "hazy images"), {"read_from": {spec.name: str(folder.resolve())}})


# ----------------------------------------------------------------------------------------- denoising


def parse_sigmas(text: str) -> list[float]:
    """'15,25,50' → [15.0, 25.0, 50.0]: positive, finite, each once (σ on the 0–255 scale)."""
    sigmas = []
    for part in text.split(","):
        try:
            s = float(part)
        except ValueError:
            raise InterIRError(f"--sigma must be numbers separated by commas (e.g. 15,25,50), got {text!r}") from None
        if not math.isfinite(s) or not 0 < s <= 255:
            raise InterIRError(f"--sigma values must be in (0, 255] (the 0–255 scale), got {part.strip()!r}")
        if s in sigmas:
            raise InterIRError(f"--sigma lists {s:g} twice")
        sigmas.append(s)
    return sigmas


def noise_seed(seed: int, name: str) -> int:
    """The noise seed of one clean image: depends on --seed and the image's stem only, so adding images leaves
    the others unchanged, and the noise of every σ is the same unit field scaled by σ (before clipping)."""
    h = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    return mix_seed(seed, h)


def sigma_folder(sigma: float) -> str:
    return f"sigma{sigma:g}"


def _clean_pixels(path: Path, gray: bool) -> np.ndarray:
    """The clean image as 8-bit H×W×C (alpha dropped; one channel for a grayscale set)."""
    img, _ = load_image(path, channels=None)
    if img.shape[0] in (2, 4):
        img = img[:-1]
    if gray:
        img = img[:1]
    return quantize(img)


def noisy_pixels(path: Path, gray: bool, sigma: float, seed: int) -> np.ndarray:
    """The noisy input: interir.data.degrade's Gaussian noise of σ (0–255 scale) on the 8-bit clean image,
    clipped to [0, 1] and rounded to 8 bits (docs/data.md, noise)."""
    clean8 = _clean_pixels(path, gray)
    clean = torch.from_numpy(clean8).permute(2, 0, 1).float() / 255.0
    noisy, _ = degrade(clean, noise=sigma, seed=seed)
    return quantize(noisy)


def _as_is(path: Path, channels: int, bits: int, gray: bool) -> bool:
    """Whether the file itself can be the target: lossless, 8-bit, no alpha, and grey for a grayscale set."""
    return path.suffix.lower() in AS_IS_SUFFIXES and bits == 8 and channels in ((1,) if gray else (1, 3))


def _check_clean(spec: Spec, files: Sequence[Path]) -> tuple[dict[Path, bool], list[str]]:
    """Decode every clean image once: {file: usable as is}, and the problems (unreadable, colour in a
    grayscale set)."""
    as_is, unreadable, colour = {}, [], []
    for f in files:
        try:
            img, bits = load_image(f, channels=None)
        except InterIRError:
            unreadable.append(f.name)
            continue
        c = img.shape[0]
        if spec.gray and c >= 3 and not (torch.equal(img[0], img[1]) and torch.equal(img[0], img[2])):
            colour.append(f.name)
        as_is[f] = _as_is(f, c, bits, spec.gray)
    problems = []
    if unreadable:
        problems.append(f"{spec.name}: cannot read {len(unreadable)} of {len(files)} images: {_names(unreadable)}")
    if colour:
        problems.append(f"{spec.name} is a grayscale set but {len(colour)} images are in colour: {_names(colour)} "
                        f"(the colour set is CBSD68)")
    return as_is, problems


def plan_denoise(spec: Spec, src: Path, sigmas: Sequence[float], seed: int) -> Plan:
    """Clean images → DST/sigma<σ>/target/ (the clean image) + input/ (noisy PNG) for every σ."""
    folder = _locate(spec, src, lambda f: bool(list_images(f)))
    if folder is None:
        raise InterIRError(f"{spec.name}: no images in {src} (looked in SRC and {_tried(spec)})")
    files = list_images(folder)
    problems = _duplicates(spec.name, f"{folder.name}/", files, lambda p: p.stem)
    as_is, errs = _check_clean(spec, files)
    _stop(problems + errs)
    items = []
    for sigma in sigmas:
        top = sigma_folder(sigma)
        for f in files:
            make = functools.partial(noisy_pixels, f, spec.gray, sigma, noise_seed(seed, f.stem))
            items.append(Item(f"{top}/input/{f.stem}.png", f, make))
            if as_is[f]:
                items.append(Item(f"{top}/target/{f.name}", f))
            else:
                items.append(Item(f"{top}/target/{f.stem}.png", f, functools.partial(_clean_pixels, f, spec.gray)))
    sets = {sigma_folder(s): len(files) for s in sigmas}
    record = {"read_from": {spec.name: str(folder.resolve())}, "sigmas": list(sigmas), "seed": seed,
              "generator_version": GENERATOR_VERSION, "grayscale": spec.gray,
              "noise_seed": "interir.prepare.noise_seed(seed, image stem)"}
    return Plan(spec.name, sets, items, list(sets), _count_note(spec, len(files), "images"), record)


def make_plan(spec: Spec, src: Path, *, sigmas: Sequence[float] = DEFAULT_SIGMAS, seed: int = 0) -> Plan:
    """Check SRC for `spec`'s layout and list every file DST will get; raises one InterIRError line naming
    what is missing."""
    if not src.is_dir():
        raise InterIRError(f"source folder not found: {src}")
    if spec.family == "derain":
        plan = plan_derain(spec, src)
    elif spec.family == "bundle":
        plan = plan_deraining(src)
    elif spec.family == "sots":
        plan = plan_sots(spec, src)
    else:
        plan = plan_denoise(spec, src, sigmas, seed)
    plan.record = {"dataset": spec.name, "source": str(src.resolve()), "pairs": dict(plan.sets), **plan.record}
    return plan


# -------------------------------------------------------------------------------------------- writing


def _copy_file(source: Path, dest: Path) -> None:
    """Copy the bytes of `source` to the new file `dest` and flush them to disk."""
    with open(source, "rb") as fi, open(dest, "xb") as fo:
        shutil.copyfileobj(fi, fo, 1 << 20)
        fo.flush()
        os.fsync(fo.fileno())


def _place(item: Item, staging: Path, link: bool) -> str:
    """Put one item into the staging folder; returns 'written', 'linked' or 'copied'."""
    dest = staging / item.rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if item.make is not None:
        write_image(dest, item.make())
        return "written"
    if link:
        try:
            os.link(item.source, dest)
            return "linked"
        except OSError:  # another file system, or links not allowed there: copy instead
            pass
    _copy_file(item.source, dest)
    return "copied"


def _check_out(plan: Plan, out: Path, force: bool) -> None:
    """Refuse a DST that is a file, a non-empty folder without --force, or one whose replaced parts hold
    source files (replacing them would delete the sources)."""
    if out.exists() and not out.is_dir():
        raise InterIRError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        shown = ", ".join([*(f"{p}/" for p in plan.parts), RECORD])
        raise InterIRError(f"output folder {out} is not empty; use --force to replace {shown} in it")
    folders = {item.source.parent for item in plan.items}
    for part in plan.parts:
        replaced = (out / part).resolve()
        for folder in folders:
            if replaced == folder.resolve() or replaced in folder.resolve().parents:
                raise InterIRError(f"{out / part}, which the new set replaces, holds source images ({folder}); "
                                   f"choose another output folder (nothing was written)")


def write_plan(plan: Plan, out: Path, *, link: bool = False, force: bool = False,
               progress: bool = True) -> Counter:
    """Write the plan's files into `out` through a staging folder beside it; returns how many files were
    linked, copied and written. An error or an interruption leaves `out` as it was."""
    _check_out(plan, out, force)
    bar = show_progress(total=len(plan.items), desc="prepare", unit="file", enabled=progress)
    stats: Counter = Counter()
    try:
        with staged_set(out, [*plan.parts, RECORD]) as staging:
            for item in plan.items:
                stats[_place(item, staging, link)] += 1
                bar.update(1)
            atomic_write_text(staging / RECORD, json.dumps({**plan.record, "files": dict(stats)}, indent=2) + "\n")
            for folder in sorted({(staging / i.rel).parent for i in plan.items}):
                fsync_dir(folder)
    finally:
        bar.close()
    return stats


# ------------------------------------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="NAME", help="dataset name (interir prepare --list)")
    parser.add_argument("source", nargs="?", metavar="SRC", help="the downloaded dataset's folder")
    parser.add_argument("out", nargs="?", metavar="DST", help="output folder of the paired set(s)")
    parser.add_argument("--list", action="store_true", help="print the known NAMEs and their expected layouts")
    parser.add_argument("--link", action="store_true",
                        help="hard-link the files instead of copying them where possible (copy where not)")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty DST, replacing the set(s) this command makes there")
    parser.add_argument("--sigma", default=None,
                        help="denoising sets: noise σ list on the 0–255 scale (default 15,25,50)")
    parser.add_argument("--seed", type=seed_arg, default=None, help="denoising sets: noise seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _noise_options(spec: Spec, args: argparse.Namespace) -> tuple[list[float], int]:
    if spec.family != "denoise":
        for flag, value in (("--sigma", args.sigma), ("--seed", args.seed)):
            if value is not None:
                raise InterIRError(f"{flag} applies to the denoising sets only, not {spec.name}")
        return list(DEFAULT_SIGMAS), 0
    sigmas = parse_sigmas(args.sigma) if args.sigma is not None else list(DEFAULT_SIGMAS)
    return sigmas, 0 if args.seed is None else args.seed


def _summary(plan: Plan, out: Path, stats: Counter) -> str:
    """What was made: one line per set with its pairs, then the files by how they got there."""
    how = ", ".join(f"{n:,} {k}" for k, n in sorted(stats.items()))
    lines = [f"made {plan.name} in {out}: {sum(stats.values()):,} files ({how}), described in {out / RECORD}"]
    lines += [f"  {out / name if name else out}: {n:,} pairs (input/, target/)" for name, n in plan.sets.items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.list:
        print(list_text())
        return 0
    if not (args.name and args.source and args.out):
        raise InterIRError("give NAME SRC DST (interir prepare --list shows the NAMEs and their layouts)")
    spec = lookup(args.name)
    sigmas, seed = _noise_options(spec, args)
    plan = make_plan(spec, Path(args.source), sigmas=sigmas, seed=seed)
    out = Path(args.out)
    stats = write_plan(plan, out, link=args.link, force=args.force, progress=not args.quiet)
    print(_summary(plan, out, stats))
    for note in plan.notes:
        print(f"note: {note}")
    return 0
