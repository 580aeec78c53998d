"""`interir prepare`: benchmark folders into the paired layout, checked before writing, written atomically."""
from __future__ import annotations

import argparse
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import interir.prepare as P
from interir.data import PairedFolderDataset, read_image
from interir.data.degrade import degrade
from interir.data.imageio import quantize, write_image
from interir.errors import InterIRError
from interir.eval_core import load_eval_sets


def prepare(*argv) -> int:
    """Run `interir prepare ARGV --quiet` through the module's own parser."""
    parser = argparse.ArgumentParser(prog="interir prepare")
    P.add_arguments(parser)
    return P.run(parser.parse_args([*map(str, argv), "--quiet"]))


def image(path: Path, h: int = 12, w: int = 16, c: int = 3, rng=None) -> np.ndarray:
    """Write a random 8-bit image (c = 1: grayscale) and return its pixels."""
    rng = rng or np.random.default_rng(zlib.crc32("/".join(path.parts[-3:]).encode()))
    arr = rng.integers(0, 256, (h, w, c) if c > 1 else (h, w), dtype=np.uint8)
    write_image(path, arr)
    return arr


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def leftovers(folder: Path) -> list[str]:
    """Hidden staging folders or temporary files left in `folder`."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def rain_set(root: Path, n: int = 5, ext: str = ".png") -> Path:
    """An MPRNet/Restormer deraining set: root/input/k.png and root/target/k.png."""
    for k in range(1, n + 1):
        image(root / "input" / f"{k}{ext}")
        image(root / "target" / f"{k}{ext}")
    return root


# ---------------------------------------------------------------------------------------------- --list


def test_list_names_every_dataset_and_its_layout(capsys):
    assert prepare("--list") == 0
    out = capsys.readouterr().out
    for name in ("Rain13K", "Rain100L", "Rain100H", "Test100", "Test1200", "Test2800", "deraining", "SOTS-indoor",
                 "SOTS-outdoor", "BSD68", "CBSD68", "Urban100", "Kodak24", "McMaster"):
        assert f"\n{name}: " in "\n" + out, name
    assert "rain-NNN.png + norain-NNN.png" in out and "hazy/ + gt/" in out and "DST/sigma<σ>/input/" in out


def test_names_are_looked_up_loosely_and_unknown_ones_refused(tmp_path):
    assert P.lookup("sots_indoor").name == "SOTS-indoor" and P.lookup("kodak").name == "Kodak24"
    with pytest.raises(InterIRError, match="unknown dataset 'Rain200H'.*--list"):
        prepare("Rain200H", tmp_path, tmp_path / "out")
    with pytest.raises(InterIRError, match="give NAME SRC DST"):
        prepare("Rain100H")


# ------------------------------------------------------------------------------------------- deraining


def test_mprnet_layout_is_found_under_datasets_and_copied_as_pairs(tmp_path, capsys):
    src = tmp_path / "Datasets"
    rain_set(src / "test" / "Rain100H")
    dst = tmp_path / "data" / "Rain100H"
    assert prepare("Rain100H", src, dst) == 0
    out = capsys.readouterr().out
    assert "Rain100H has 5 pairs; the official set has 100" in out and "5 pairs" in out
    assert names(dst) == ["input", "prepare.json", "target"]
    assert names(dst / "input") == names(dst / "target") == [f"{k}.png" for k in range(1, 6)]
    for k in range(1, 6):
        for part in ("input", "target"):
            assert (dst / part / f"{k}.png").read_bytes() == (src / "test/Rain100H" / part / f"{k}.png").read_bytes()
    sets = load_eval_sets(dst)
    assert list(sets) == ["Rain100H"] and len(sets["Rain100H"]) == 5
    item = sets["Rain100H"][2]
    assert torch.equal(item["target"], read_image(src / "test/Rain100H/target/3.png"))
    assert torch.equal(item["input"], read_image(src / "test/Rain100H/input/3.png"))
    assert leftovers(tmp_path / "data") == []


def test_original_rain100_naming_is_paired_and_renamed_to_one_stem(tmp_path):
    src = tmp_path / "Rain100L"
    for k in range(1, 4):
        image(src / f"rain-{k:03d}.png")
        image(src / f"norain-{k:03d}.png")
    dst = tmp_path / "out"
    assert prepare("Rain100L", src, dst) == 0
    assert names(dst / "input") == names(dst / "target") == ["001.png", "002.png", "003.png"]
    assert (dst / "input/002.png").read_bytes() == (src / "rain-002.png").read_bytes()
    assert (dst / "target/002.png").read_bytes() == (src / "norain-002.png").read_bytes()
    ds = PairedFolderDataset(dst)
    assert [(a.name, b.name) for a, b in ds.pairs] == [(f"{k:03d}.png",) * 2 for k in range(1, 4)]


def test_deraining_takes_every_set_found_and_names_the_absent_ones(tmp_path, capsys):
    src = tmp_path / "Datasets"
    rain_set(src / "train" / "Rain13K", 4, ".jpg")
    rain_set(src / "test" / "Rain100L", 3)
    rain_set(src / "test" / "Test100", 2)
    dst = tmp_path / "derain"
    assert prepare("deraining", src, dst) == 0
    out = capsys.readouterr().out
    assert "not made: Rain100H, Test1200, Test2800" in out
    assert names(dst) == ["Rain100L", "Rain13K", "Test100", "prepare.json"]
    for name, n in (("Rain13K", 4), ("Rain100L", 3), ("Test100", 2)):
        assert len(load_eval_sets(dst / name)[name]) == n
    train = PairedFolderDataset(dst / "Rain13K", patch_size=8, flips=True, seed=0)  # datasets.train.type: paired
    assert train[0]["input"].shape == (3, 8, 8)


def test_missing_targets_are_named_and_nothing_is_written(tmp_path):
    src = rain_set(tmp_path / "Rain100H", 6)
    (src / "target/2.png").unlink()
    (src / "target/5.png").unlink()
    dst = tmp_path / "out"
    with pytest.raises(InterIRError) as info:
        prepare("Rain100H", src, dst)
    msg = str(info.value)
    assert "Rain100H: target/ missing 2 of 6 images: 2.png, 5.png" in msg and "\n" not in msg
    assert not dst.exists() and leftovers(tmp_path) == []


def test_missing_files_of_the_original_naming_are_named_on_both_sides(tmp_path):
    src = tmp_path / "Rain100H"
    for k in range(1, 7):
        image(src / f"rain-{k}.png")
        image(src / f"norain-{k}.png")
    for k in (2, 3, 4, 6):
        (src / f"norain-{k}.png").unlink()
    (src / "rain-1.png").unlink()
    with pytest.raises(InterIRError) as info:
        prepare("Rain100H", src, tmp_path / "out")
    msg = str(info.value)
    assert "norain-* missing 4 of 5 images: norain-2.png, norain-3.png, norain-4.png, ..." in msg
    assert "rain-* missing 1 of 2 images: rain-1.png" in msg
    assert not (tmp_path / "out").exists()


def test_a_set_without_its_target_folder_is_refused(tmp_path):
    src = tmp_path / "Test100"
    image(src / "input/1.png")
    with pytest.raises(InterIRError, match="has no target/ folder"):
        prepare("Test100", src, tmp_path / "out")
    with pytest.raises(InterIRError, match="Test1200: no set found"):
        prepare("Test1200", tmp_path / "Test100" / "input", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- SOTS


def test_sots_indoor_pairs_by_id_and_crops_the_larger_ground_truth(tmp_path):
    src = tmp_path / "SOTS" / "indoor" / "nyuhaze500"
    for i in (1400, 1401):
        for k in range(1, 4):
            image(src / "hazy" / f"{i}_{k}.png", 12, 16)
        image(src / "gt" / f"{i}.png", 32, 36)  # 10 px larger on every side, as SOTS indoor's
    dst = tmp_path / "sots"
    assert prepare("SOTS-indoor", tmp_path / "SOTS", dst) == 0
    want = sorted(f"{i}_{k}.png" for i in (1400, 1401) for k in range(1, 4))
    assert names(dst / "input") == names(dst / "target") == want
    gt = pixels(src / "gt/1401.png")
    for k in range(1, 4):
        assert np.array_equal(pixels(dst / f"target/1401_{k}.png"), gt[10:22, 10:26])
        assert (dst / f"input/1401_{k}.png").read_bytes() == (src / f"hazy/1401_{k}.png").read_bytes()
    ds = load_eval_sets(dst)["sots"]
    assert len(ds) == 6 and ds[0]["input"].shape == ds[0]["target"].shape == (3, 12, 16)


def test_sots_outdoor_accepts_clear_and_copies_same_size_targets(tmp_path):
    src = tmp_path / "outdoor"
    rng = np.random.default_rng(0)
    for i, beta in (("0001", "0.8_0.2"), ("0002", "0.85_0.16")):
        write_image(src / "hazy" / f"{i}_{beta}.jpg", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        image(src / "clear" / f"{i}.png")
    dst = tmp_path / "out"
    assert prepare("sots-outdoor", tmp_path, dst) == 0
    assert names(dst / "input") == ["0001_0.8_0.2.jpg", "0002_0.85_0.16.jpg"]
    assert names(dst / "target") == ["0001_0.8_0.2.png", "0002_0.85_0.16.png"]
    assert (dst / "target/0002_0.85_0.16.png").read_bytes() == (src / "clear/0002.png").read_bytes()
    assert len(load_eval_sets(dst)["out"]) == 2


def test_sots_missing_ground_truth_is_named(tmp_path):
    src = tmp_path / "indoor"
    for i in (1400, 1401, 1402):
        image(src / "hazy" / f"{i}_1.png")
    image(src / "gt/1400.png")
    image(src / "gt/1499.png")
    with pytest.raises(InterIRError) as info:
        prepare("SOTS-indoor", src, tmp_path / "out")
    msg = str(info.value)
    assert "gt/ missing 2 of 3 images: 1401.png, 1402.png" in msg
    assert "hazy/ has no image for 1 of 2 clear images: 1499.png" in msg
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------- denoising


def smooth(path: Path, h: int = 96, w: int = 96, c: int = 3, seed: int = 0) -> np.ndarray:
    """A mid-grey textured image (values 118–138), so that σ ≤ 50 noise is hardly ever clipped."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(118, 139, (h, w, c) if c > 1 else (h, w), dtype=np.uint8)
    write_image(path, arr)
    return arr


def test_denoising_sets_have_the_right_sigma_and_the_projects_noise(tmp_path):
    src = tmp_path / "CBSD68"
    smooth(src / "a.png", seed=1)
    smooth(src / "b.tif", seed=2)
    dst = tmp_path / "out"
    assert prepare("CBSD68", src, dst, "--sigma", "15,25,50", "--seed", "3") == 0
    assert names(dst) == ["prepare.json", "sigma15", "sigma25", "sigma50"]
    for sigma in (15, 25, 50):
        d = dst / f"sigma{sigma}"
        assert names(d / "input") == ["a.png", "b.png"] and names(d / "target") == ["a.png", "b.tif"]
        assert (d / "target/b.tif").read_bytes() == (src / "b.tif").read_bytes()  # lossless: copied as it is
        noisy, clean = pixels(d / "input/a.png").astype(float), pixels(src / "a.png").astype(float)
        assert abs((noisy - clean).std() - sigma) < 0.02 * sigma
        assert abs((noisy - clean).mean()) < 0.05 * sigma
        # exactly interir.data.degrade's noise, seeded by the image's name
        again, _ = degrade(read_image(src / "a.png"), noise=sigma, seed=P.noise_seed(3, "a"))
        assert np.array_equal(quantize(again), pixels(d / "input/a.png"))
        assert len(load_eval_sets(d)[f"sigma{sigma}"]) == 2


def test_denoising_noise_is_deterministic_per_seed_and_per_image(tmp_path):
    src = tmp_path / "Kodak"
    smooth(src / "kodim01.png", 24, 24, seed=1)
    smooth(src / "kodim02.png", 24, 24, seed=2)
    runs = {}
    for label, seed in (("a", 0), ("b", 0), ("c", 1)):
        prepare("Kodak24", tmp_path, tmp_path / label, "--sigma", "25", "--seed", seed)
        runs[label] = (tmp_path / label / "sigma25/input/kodim01.png").read_bytes()
    assert runs["a"] == runs["b"] and runs["a"] != runs["c"]
    smooth(src / "kodim00.png", 24, 24, seed=3)  # another image leaves the noise of the others as it was
    prepare("Kodak24", tmp_path, tmp_path / "d", "--sigma", "25")
    assert (tmp_path / "d/sigma25/input/kodim01.png").read_bytes() == runs["a"]


def test_bsd68_stays_grayscale(tmp_path):
    src = tmp_path / "BSD68"
    smooth(src / "test001.png", 32, 32, c=1)
    grey3 = np.repeat(smooth(tmp_path / "g.png", 32, 32, c=1, seed=5)[..., None], 3, axis=2)
    write_image(src / "test002.png", grey3)  # a grey image stored as RGB
    dst = tmp_path / "out"
    assert prepare("BSD68", src, dst, "--sigma", "25") == 0
    for part in ("input", "target"):
        for name in ("test001.png", "test002.png"):
            assert Image.open(dst / "sigma25" / part / name).mode == "L", (part, name)
    assert (dst / "sigma25/target/test001.png").read_bytes() == (src / "test001.png").read_bytes()
    assert np.array_equal(pixels(dst / "sigma25/target/test002.png"), grey3[..., 0])
    noise = pixels(dst / "sigma25/input/test001.png").astype(float) - pixels(src / "test001.png")
    assert abs(noise.std() - 25) < 1.5
    item = load_eval_sets(dst / "sigma25")["sigma25"][0]
    assert item["input"].shape == (3, 32, 32) and torch.equal(item["input"][0], item["input"][2])


def test_a_colour_image_in_bsd68_is_refused(tmp_path):
    src = tmp_path / "BSD68"
    smooth(src / "gray.png", 16, 16, c=1)
    image(src / "colour.png")
    with pytest.raises(InterIRError, match="BSD68 is a grayscale set but 1 images are in colour: colour.png"):
        prepare("BSD68", src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (("CBSD68", "--sigma", "0"), r"must be in \(0, 255\]"),
    (("CBSD68", "--sigma", "1e9"), r"must be in \(0, 255\]"),
    (("CBSD68", "--sigma", "15,x"), "numbers separated by commas"),
    (("CBSD68", "--sigma", "15,15"), "lists 15 twice"),
    (("Rain100H", "--sigma", "15"), "--sigma applies to the denoising sets only"),
    (("Rain100H", "--seed", "1"), "--seed applies to the denoising sets only"),
])
def test_noise_options_are_checked(tmp_path, argv, message):
    smooth(tmp_path / "src/x.png", 8, 8)
    rain_set(tmp_path / "src", 1)
    name, *rest = argv
    with pytest.raises(InterIRError, match=message):
        prepare(name, tmp_path / "src", tmp_path / "out", *rest)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- writing: DST and links


def test_a_non_empty_dst_is_refused_without_force_and_only_the_set_replaced_with_it(tmp_path):
    src = rain_set(tmp_path / "Test100", 2)
    dst = tmp_path / "out"
    (dst / "input").mkdir(parents=True)
    (dst / "input/old.png").write_bytes(b"old")
    (dst / "notes.txt").write_text("mine")
    with pytest.raises(InterIRError, match="is not empty; use --force"):
        prepare("Test100", src, dst)
    assert (dst / "input/old.png").read_bytes() == b"old"
    assert prepare("Test100", src, dst, "--force") == 0
    assert names(dst / "input") == ["1.png", "2.png"]  # the earlier input/ was replaced as a whole
    assert (dst / "notes.txt").read_text() == "mine" and leftovers(dst) == []


def test_force_never_replaces_the_source(tmp_path):
    src = rain_set(tmp_path / "Test100", 2)
    before = {p: p.read_bytes() for p in src.rglob("*.png")}
    with pytest.raises(InterIRError, match="which the new set replaces, holds source images"):
        prepare("Test100", src, src, "--force")
    assert {p: p.read_bytes() for p in src.rglob("*.png")} == before
    assert leftovers(tmp_path) == [] and leftovers(src) == []


def test_link_makes_hard_links(tmp_path, capsys):
    src = rain_set(tmp_path / "Rain100L", 3)
    dst = tmp_path / "out"
    assert prepare("Rain100L", src, dst, "--link") == 0
    assert "6 linked" in capsys.readouterr().out
    for part in ("input", "target"):
        a, b = (dst / part / "2.png").stat(), (src / part / "2.png").stat()
        assert a.st_ino == b.st_ino and a.st_nlink == 2
    # without --link the files are copies
    assert prepare("Rain100L", src, tmp_path / "copy") == 0
    assert (tmp_path / "copy/input/2.png").stat().st_ino != (src / "input/2.png").stat().st_ino


def test_link_falls_back_to_copies_where_links_fail(tmp_path, monkeypatch, capsys):
    src = rain_set(tmp_path / "Rain100L", 2)

    def cross_device(a, b, *args, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    assert prepare("Rain100L", src, tmp_path / "out", "--link") == 0
    assert "4 copied" in capsys.readouterr().out
    copied = tmp_path / "out/target/1.png"
    assert copied.read_bytes() == (src / "target/1.png").read_bytes()
    assert copied.stat().st_ino != (src / "target/1.png").stat().st_ino


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_an_interrupted_run_leaves_nothing(tmp_path, monkeypatch, error):
    src = rain_set(tmp_path / "Rain100H", 4)
    calls = []
    real = P._copy_file

    def copy_then_fail(a, b):
        calls.append(a)
        if len(calls) == 5:
            raise error
        real(a, b)

    monkeypatch.setattr(P, "_copy_file", copy_then_fail)
    dst = tmp_path / "data" / "Rain100H"
    with pytest.raises(type(error)):
        prepare("Rain100H", src, dst)
    assert len(calls) == 5 and not dst.exists() and leftovers(tmp_path / "data") == []


def test_an_interrupted_force_run_keeps_the_earlier_set(tmp_path, monkeypatch):
    src = rain_set(tmp_path / "Rain100H", 3)
    dst = tmp_path / "out"
    prepare("Rain100H", src, dst)
    before = {p.relative_to(dst): p.read_bytes() for p in dst.rglob("*") if p.is_file()}
    image(src / "input/4.png")
    image(src / "target/4.png")

    def fail(a, b):
        raise RuntimeError("stop")

    monkeypatch.setattr(P, "_copy_file", fail)
    with pytest.raises(RuntimeError):
        prepare("Rain100H", src, dst, "--force")
    assert {p.relative_to(dst): p.read_bytes() for p in dst.rglob("*") if p.is_file()} == before
    assert leftovers(tmp_path) == [] and leftovers(dst) == []


def test_the_command_line_prints_one_line_errors(tmp_path, monkeypatch, capsys):
    """Through interir.cli.main, with the command registered as the lead registers it."""
    from interir import cli

    monkeypatch.setitem(cli.COMMANDS, "prepare", ("interir.prepare", "benchmarks into the paired layout"))
    src = rain_set(tmp_path / "Rain100H", 2)
    (src / "target/1.png").unlink()
    assert cli.main(["prepare", "Rain100H", str(src), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("interir prepare: error: Rain100H: target/ missing 1 of 2 images: 1.png")
    assert "\n" not in err and "Traceback" not in err
    assert cli.main(["prepare", "--list"]) == 0 and "SOTS-indoor" in capsys.readouterr().out


def test_a_deraining_pair_that_cannot_be_read_stops_the_set_before_anything_is_written(tmp_path):
    rain_set(tmp_path / "Rain100L", 3)
    (tmp_path / "Rain100L" / "target" / "2.png").write_bytes(b"")  # a 0-byte target
    with pytest.raises(InterIRError, match=r"Rain100L: cannot read 1 images: 2\.png"):
        prepare("Rain100L", tmp_path / "Rain100L", tmp_path / "out")
    assert not (tmp_path / "out").exists()
