"""interir.data.imageio and interir.data.datasets: file formats, benchmark pairing rules, on-the-fly MDIR data."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from interir.data import degrade as D
from interir.data.datasets import (MultiDegradationDataset, PairedFolderDataset, load_synthetic_testset,
                                   match_pairs, target_candidates)
from interir.data.imageio import list_images, load_image, quantize, read_image, write_image
from interir.errors import InterIRError

skdata = pytest.importorskip("skimage.data")
skio = pytest.importorskip("skimage.io")


def crop(name: str, top: int, left: int, h: int = 40, w: int = 48) -> np.ndarray:
    a = getattr(skdata, name)()
    return np.ascontiguousarray(a[top:top + h, left:left + w])


def save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def as_uint8(t: torch.Tensor) -> np.ndarray:
    return quantize(t)


# ------------------------------------------------------------------------------------------- imageio


@pytest.mark.parametrize("ext", [".png", ".tif", ".bmp"])
def test_8bit_round_trip_lossless(tmp_path, ext):
    a = crop("astronaut", 10, 200)
    write_image(tmp_path / f"a{ext}", a)
    img, bits = load_image(tmp_path / f"a{ext}")
    assert bits == 8 and img.dtype == torch.float32 and img.shape == (3, 40, 48)
    assert np.array_equal(as_uint8(img), a)
    t = torch.from_numpy(a).permute(2, 0, 1).float() / 255
    write_image(tmp_path / f"t{ext}", t)
    assert np.array_equal(np.asarray(Image.open(tmp_path / f"t{ext}").convert("RGB")), a)


@pytest.mark.parametrize("bits", [8, 16])
def test_load_image_values_are_level_over_top_in_float32(tmp_path, bits):
    """Every level k reads as float32(k) / float32(2^bits − 1), bit for bit, in every channel layout."""
    dtype, top = (np.uint8, 255) if bits == 8 else (np.uint16, 65535)
    levels = np.arange(top + 1, dtype=np.int64)
    rows = -(-levels.size // 256)
    flat = np.resize(levels, rows * 256).astype(dtype).reshape(rows, 256)
    rgb = np.stack([flat, flat[::-1], np.roll(flat, 7)], axis=2)
    write_image(tmp_path / "rgb.png", rgb)
    write_image(tmp_path / "grey.png", flat)
    want = rgb.astype(np.float32) / np.float32(top)
    img, got_bits = load_image(tmp_path / "rgb.png")
    assert got_bits == bits and img.is_contiguous()
    assert np.array_equal(img.permute(1, 2, 0).numpy(), want)
    grey, _ = load_image(tmp_path / "grey.png")  # grey repeated to RGB
    assert grey.shape == (3, rows, 256) and grey.is_contiguous()
    assert all(np.array_equal(grey[c].numpy(), flat.astype(np.float32) / np.float32(top)) for c in range(3))


@pytest.mark.parametrize("bits", [8, 16])
def test_quantize_in_bands_equals_the_whole_image_formula(monkeypatch, bits):
    """quantize() works in bands of rows; any band size gives clamp → scale → round of the whole image, and
    the input is left as it was."""
    import interir.data.imageio as imageio

    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 37, 29, generator=g) * 1.4 - 0.2  # values outside [0, 1] too
    img[0, 0, 0], img[1, 5, 3] = 0.5 / 255, 1.5 / 255  # halfway cases of the rounding
    before = img.clone()
    top = 255.0 if bits == 8 else 65535.0
    want = (img.clamp(0, 1) * top).round().permute(1, 2, 0).numpy().astype(np.uint8 if bits == 8 else np.uint16)
    for band_values in (1, 29 * 3 * 5, 29 * 3 * 5 + 1, 1 << 20):  # a row, 5 rows (37 = 7×5 + 2), whole
        monkeypatch.setattr(imageio, "_QUANTIZE_BAND_VALUES", band_values)
        got = quantize(img, bits)
        assert got.dtype == want.dtype and got.flags.c_contiguous and np.array_equal(got, want), band_values
    assert torch.equal(img, before)
    assert np.array_equal(quantize(img[0], bits), want[..., 0:1])  # H×W → H×W×1


def test_jpeg_round_trip_is_close(tmp_path):
    a = crop("coffee", 100, 100)
    write_image(tmp_path / "a.jpg", a)
    back = as_uint8(read_image(tmp_path / "a.jpg")).astype(int)
    assert np.abs(back - a).mean() < 3


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_round_trip_is_exact(tmp_path, ext, channels):
    rng = np.random.default_rng(channels)
    shape = (23, 31) if channels == 1 else (23, 31, channels)
    a = rng.integers(0, 65536, shape, dtype=np.uint16)
    write_image(tmp_path / f"a{ext}", a)
    img, bits = load_image(tmp_path / f"a{ext}", channels=None)
    assert bits == 16 and img.shape == (channels, 23, 31)
    assert np.array_equal(quantize(img, 16).squeeze(), a)
    # default channels=3: grey repeated, alpha dropped
    rgb = read_image(tmp_path / f"a{ext}")
    assert rgb.shape == (3, 23, 31)
    assert torch.equal(rgb[0], img[0]) and torch.equal(rgb[2], img[2 if channels >= 3 else 0])


def test_16bit_files_from_other_writers(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    skio.imsave(tmp_path / "sk.tif", a, check_contrast=False)  # tifffile
    assert np.array_equal(quantize(read_image(tmp_path / "sk.tif"), 16), a)
    g = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    skio.imsave(tmp_path / "g.png", g, check_contrast=False)  # Pillow, 16-bit grey
    assert np.array_equal(quantize(read_image(tmp_path / "g.png", channels=None), 16)[..., 0], g)
    # our 16-bit colour PNGs are valid PNGs for Pillow (which keeps only the high byte)
    write_image(tmp_path / "ours.png", a)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "ours.png")), (a >> 8).astype(np.uint8))


def _png16_with_all_filters(a: np.ndarray) -> bytes:
    """An independent 16-bit RGB PNG encoder that uses every filter type (row y gets filter y % 5)."""
    h, w, c = a.shape
    raw = a.astype(">u2").view(np.uint8).reshape(h, w * 2 * c).astype(np.int32)
    bpp = 2 * c
    rows = []
    for y in range(h):
        x = raw[y]
        up = raw[y - 1] if y else np.zeros_like(x)
        left = np.concatenate([np.zeros(bpp, np.int32), x[:-bpp]])
        ul = np.concatenate([np.zeros(bpp, np.int32), up[:-bpp]])
        p = left + up - ul
        pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - ul)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, ul))
        ft = y % 5
        pred = [0, left, up, (left + up) // 2, paeth][ft]
        rows.append(bytes([ft]) + ((x - pred) % 256).astype(np.uint8).tobytes())

    def chunk(k, d):
        return struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 6 if c == 4 else 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_png_decoder_handles_every_filter(tmp_path, channels):
    a = (np.random.default_rng(5).integers(0, 65536, (17, 13, channels))).astype(np.uint16)
    a[5:9] = a[4]  # some smooth rows too
    (tmp_path / "f.png").write_bytes(_png16_with_all_filters(a))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "f.png").convert("RGB")), (a[..., :3] >> 8).astype(np.uint8))
    img = read_image(tmp_path / "f.png", channels=None)
    assert np.array_equal(quantize(img, 16), a)


def test_grey_rgba_palette_and_exif(tmp_path):
    grey = skdata.camera()[100:120, 100:124].copy()
    save(tmp_path / "g.png", grey)
    img = read_image(tmp_path / "g.png")
    assert img.shape == (3, 20, 24) and torch.equal(img[0], img[2])
    assert read_image(tmp_path / "g.png", channels=None).shape == (1, 20, 24)
    rgba = skdata.logo()[:30, :30].copy()
    save(tmp_path / "l.png", rgba)
    assert read_image(tmp_path / "l.png", channels=None).shape == (4, 30, 30)
    assert np.array_equal(as_uint8(read_image(tmp_path / "l.png")), rgba[..., :3])
    Image.fromarray(crop("chelsea", 0, 0)).convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (3, 40, 48)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.fromarray(crop("chelsea", 0, 0)).save(tmp_path / "r.jpg", exif=exif)
    assert read_image(tmp_path / "r.jpg").shape == (3, 48, 40)


def test_write_is_atomic_and_errors_are_one_line_naming_the_file(tmp_path):
    a = crop("rocket", 0, 0)
    write_image(tmp_path / "sub" / "x.png", a)
    write_image(tmp_path / "sub" / "x.png", 255 - a)  # replaces
    assert np.array_equal(as_uint8(read_image(tmp_path / "sub" / "x.png")), 255 - a)
    with pytest.raises(InterIRError, match="16-bit"):
        write_image(tmp_path / "sub" / "y.jpg", a.astype(np.uint16))
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["x.png"]  # no temp files left
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    for bad in (tmp_path / "bad.png", tmp_path / "missing.png"):
        with pytest.raises(InterIRError) as e:
            read_image(bad)
        assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_list_images_natural_order(tmp_path):
    for n in ("10.png", "2.png", "1.jpg", ".hidden.png", "notes.txt"):
        (tmp_path / n).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["1.jpg", "2.png", "10.png"]


# ------------------------------------------------------------------------------------ paired folders


def make_pairs(root: Path, inputs: list[str], targets: list[str], in_dir="input", tgt_dir="target"):
    for i, n in enumerate(targets):
        save(root / tgt_dir / n, crop("astronaut", 5 * i, 100))
    for i, n in enumerate(inputs):
        save(root / in_dir / n, crop("coffee", 5 * i, 100))


@pytest.mark.parametrize("in_dir,tgt_dir,inputs,targets,expected", [
    # Rain13K / Test100 / Restormer layout: same names
    ("input", "target", ["1.png", "2.png", "10.png"], ["1.png", "10.png", "2.png"],
     {"1": "1", "2": "2", "10": "10"}),
    # Rain100H/L original names in sub-folders
    ("rain", "norain", ["rain-001.png", "rain-002.png"], ["norain-001.png", "norain-002.png"],
     {"rain-001": "norain-001", "rain-002": "norain-002"}),
    # RESIDE ITS: hazy/<id>_<k>_<beta>, clear/<id>
    ("hazy", "clear", ["1_1_0.90179.png", "1_2_0.8.png", "2_1_0.7.png"], ["1.png", "2.png"],
     {"1_1_0.90179": "1", "1_2_0.8": "1", "2_1_0.7": "2"}),
    # RESIDE OTS / SOTS outdoor: hazy/<id>_<A>_<beta>.jpg, gt/<id>.png
    ("hazy", "GT", ["0001_0.8_0.2.jpg", "0001_0.9_0.16.jpg"], ["0001.png"],
     {"0001_0.8_0.2": "0001", "0001_0.9_0.16": "0001"}),
    # SOTS indoor: hazy/1400_1.png, gt/1400.png ; DDN Rain1400 rainy_image/1_14.jpg, ground_truth/1.jpg
    ("hazy", "gt", ["1400_1.png", "1400_10.png"], ["1400.png"], {"1400_1": "1400", "1400_10": "1400"}),
    ("rainy_image", "ground_truth", ["1_1.jpg", "1_14.jpg"], ["1.jpg"], {"1_1": "1", "1_14": "1"}),
    # names that themselves hold underscores: the longest matching prefix wins
    ("input", "target", ["img_01_0.8_0.2.png", "img_01.png"], ["img_01.png", "img.png"],
     {"img_01_0.8_0.2": "img_01", "img_01": "img_01"}),
])
def test_benchmark_naming_rules(tmp_path, in_dir, tgt_dir, inputs, targets, expected):
    make_pairs(tmp_path, inputs, targets, in_dir, tgt_dir)
    ds = PairedFolderDataset(tmp_path)
    got = {a.stem: b.stem for a, b in ds.pairs}
    assert got == expected
    assert all(a.parent.name == in_dir and b.parent.name == tgt_dir for a, b in ds.pairs)


def test_rain100_single_folder_layout(tmp_path):
    for n in ("rain-001.png", "norain-001.png", "rainstreak-001.png", "rainregion-001.png", "rain-002.png",
              "norain-002.png"):
        save(tmp_path / n, crop("rocket", 0, 0))
    ds = PairedFolderDataset(tmp_path)
    assert [(a.name, b.name) for a, b in ds.pairs] == [("rain-001.png", "norain-001.png"),
                                                       ("rain-002.png", "norain-002.png")]


def test_items_hold_the_files_pixels(tmp_path):
    make_pairs(tmp_path, ["a.png", "b.png"], ["a.png", "b.png"])
    ds = PairedFolderDataset(tmp_path)
    item = ds[1]
    assert item["name"] == "b" and item["input"].shape == item["target"].shape == (3, 40, 48)
    assert np.array_equal(as_uint8(item["input"]), crop("coffee", 5, 100))
    assert np.array_equal(as_uint8(item["target"]), crop("astronaut", 5, 100))
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["input"].shape == (2, 3, 40, 48) and batch["name"] == ["a", "b"]


def test_missing_partner_is_one_error_naming_the_file(tmp_path):
    make_pairs(tmp_path, ["a.png", "orphan_x.png"], ["a.png"])
    with pytest.raises(InterIRError) as e:
        PairedFolderDataset(tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "input" / "orphan_x.png") in msg and "\n" not in msg
    assert target_candidates("orphan_x") == ["orphan_x", "orphan"]


def test_unreadable_image_is_one_error_naming_the_file(tmp_path):
    make_pairs(tmp_path, ["a.png"], ["a.png"])
    (tmp_path / "target" / "a.png").write_bytes(b"broken")
    ds = PairedFolderDataset(tmp_path)
    with pytest.raises(InterIRError, match=str(tmp_path / "target" / "a.png")):
        ds[0]


def test_size_mismatch(tmp_path):
    save(tmp_path / "hazy" / "1400_1.png", crop("coffee", 0, 0, 40, 48))
    save(tmp_path / "gt" / "1400.png", crop("coffee", 0, 0, 60, 68))
    with pytest.raises(InterIRError, match="size mismatch"):
        PairedFolderDataset(tmp_path)[0]
    item = PairedFolderDataset(tmp_path, size_mismatch="crop")[0]
    assert item["input"].shape == item["target"].shape == (3, 40, 48)
    assert np.array_equal(as_uint8(item["target"]), crop("coffee", 10, 10, 40, 48))


def test_no_folders_or_no_pairs(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(InterIRError, match="input/target"):
        PairedFolderDataset(tmp_path)
    with pytest.raises(InterIRError):
        PairedFolderDataset(tmp_path / "nope")


def test_crops_and_flips_are_shared_by_input_and_target(tmp_path):
    a = crop("chelsea", 50, 50, 64, 80)
    save(tmp_path / "input" / "x.png", a)
    save(tmp_path / "target" / "x.png", 255 - a)
    ds = PairedFolderDataset(tmp_path, patch_size=24, flips=True, seed=1)
    seen = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        it = ds[0]
        assert it["input"].shape == (3, 24, 24)
        assert torch.allclose(it["input"], 1 - it["target"], atol=1e-6)
        seen.add(as_uint8(it["input"]).tobytes())
    assert len(seen) == 6
    ds.set_epoch(2)
    assert torch.equal(ds[0]["input"], ds[0]["input"])


def test_match_pairs_duplicates(tmp_path):
    t1, t2 = tmp_path / "t" / "a.png", tmp_path / "t" / "a.jpg"
    with pytest.raises(InterIRError, match="share the name"):
        match_pairs([tmp_path / "a.png"], [t1, t2])


# ------------------------------------------------------------------------------ on-the-fly MDIR training


@pytest.fixture
def clean_dir(tmp_path):
    save(tmp_path / "clean" / "astro.png", crop("astronaut", 0, 150, 64, 72))
    save(tmp_path / "clean" / "cat.jpg", crop("chelsea", 40, 100, 70, 64))
    return tmp_path / "clean"


def test_mdir_items_are_regenerable_from_their_params(clean_dir):
    ds = MultiDegradationDataset(clean_dir, patch_size=32, seed=0, repeat=4)
    assert len(ds) == 8
    combos = set()
    for i in range(len(ds)):
        it = ds[i]
        p = it["params"]
        combos.add(it["combo"])
        assert it["input"].shape == it["target"].shape == (3, 32, 32)
        assert D.combo_of(p) == it["combo"]
        for kind in D.KINDS:
            assert 0 <= p[kind] <= D.LEVEL_MAX[kind]
        again, _ = D.degrade(it["target"], haze=p["haze"], rain=p["rain"], noise=p["noise"], seed=p["seed"])
        assert torch.equal(again, it["input"])
    assert len(combos) >= 3
    assert torch.equal(ds[3]["input"], ds[3]["input"])


def test_mdir_combo_subset_and_patch_too_large(clean_dir):
    ds = MultiDegradationDataset(clean_dir, patch_size=16, combos=["h", "n"], seed=2, repeat=5)
    assert {ds[i]["combo"] for i in range(len(ds))} == {"H", "N"}
    big = MultiDegradationDataset(clean_dir, patch_size=100, seed=0)
    with pytest.raises(InterIRError, match="astro.png"):
        big[0]
    with pytest.raises(InterIRError):
        MultiDegradationDataset(clean_dir / "missing")


def test_mdir_worker_seeding(clean_dir):
    # Seeded: the same epoch gives the same batches with 0 or 2 workers.
    ds = MultiDegradationDataset(clean_dir, patch_size=16, seed=7, repeat=4)
    main = [b["input"] for b in DataLoader(ds, batch_size=4)]
    workers = [b["input"] for b in DataLoader(ds, batch_size=4, num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(main, workers))
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["params"]["haze"].shape == (4,) and len(batch["combo"]) == 4
    # Unseeded: workers do not repeat each other's randomness.
    free = MultiDegradationDataset([clean_dir / "astro.png"], patch_size=16, repeat=8)
    items = [b for b in DataLoader(free, batch_size=1, num_workers=2)]
    assert len({b["params"]["seed"].item() for b in items}) == 8
    assert len({b["target"].numpy().tobytes() for b in items}) >= 6


# ------------------------------------------------------------------------------- synthetic test sets


def test_load_synthetic_testset(tmp_path, clean_dir):
    from interir.data.synth import build_testset

    build_testset(clean_dir, tmp_path / "set", seed=1, combos=["R", "H+N"], progress=False)
    sets = load_synthetic_testset(tmp_path / "set")
    assert list(sets) == ["H+N", "R"]  # COMBINATIONS order
    it = sets["R"][0]
    assert it["combo"] == "R" and it["params"]["haze"] == 0 and it["params"]["rain"] > 0
    assert np.array_equal(as_uint8(it["input"]), np.asarray(Image.open(tmp_path / "set" / "R" / "input" / "astro.png")))
    assert it["target"].shape == it["input"].shape
    only = load_synthetic_testset(tmp_path / "set", combos=["r"])
    assert list(only) == ["R"] and len(only["R"]) == 2
    # one combination folder reads as a plain paired folder, with the shared target/
    assert len(PairedFolderDataset(tmp_path / "set" / "H+N")) == 2
    (tmp_path / "set" / "R" / "input" / "cat.png").unlink()
    with pytest.raises(InterIRError, match="cat.png"):
        load_synthetic_testset(tmp_path / "set")
    with pytest.raises(InterIRError, match="manifest"):
        load_synthetic_testset(clean_dir)


@pytest.mark.parametrize("row, needle", [
    ('{"combo": 5, "input": "R/input/a.png", "target": "target/a.png"}', "combo must be a non-empty string"),
    ('{"combo": "R", "input": ["x"], "target": "target/a.png"}', "input must be a non-empty string"),
    ('{"combo": "R", "input": "R/input/a.png"}', "no 'target'"),
    ('[1, 2]', "expected a JSON object"),
    ('{"combo": "R", "input": "../../outside.png", "target": "target/a.png"}', "relative path inside"),
    ('{"combo": "R", "input": "/etc/hostname", "target": "target/a.png"}', "relative path inside"),
    ('{"combo": "Q", "input": "R/input/a.png", "target": "target/a.png"}', "unknown degradation combination"),
])
def test_manifest_rows_are_checked_and_stay_inside_the_set(tmp_path, row, needle):
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "manifest.jsonl").write_text(row + "\n")
    with pytest.raises(InterIRError, match=needle) as info:
        load_synthetic_testset(tmp_path / "set")
    assert "line 1" in str(info.value)


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_tensor_write_round_trip(tmp_path, channels):
    """A float tensor written at 16 bits (quantize's HWC output) reads back within half a 16-bit step."""
    x = torch.rand(channels, 9, 7)
    for ext in (".png", ".tif"):
        write_image(tmp_path / f"t{ext}", x, bits=16)
        y, bits = load_image(tmp_path / f"t{ext}", channels=None)
        assert bits == 16 and y.shape == x.shape
        assert (x - y).abs().max() <= 0.5 / 65535 + 1e-7
