"""`interir synth`: layout, manifest, regeneration bit for bit, overwrite protection, preview grid."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from interir.cli import main
from interir.data import degrade as D
from interir.data.imageio import quantize, read_image
from interir.data.synth import pixels_sha256

skdata = pytest.importorskip("skimage.data")
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


@pytest.fixture
def clean_dir(tmp_path) -> Path:
    d = tmp_path / "clean"
    d.mkdir()
    Image.fromarray(skdata.astronaut()[20:76, 180:244].copy()).save(d / "astro.png")
    Image.fromarray(skdata.coffee()[150:198, 200:260].copy()).save(d / "coffee.jpg")
    return d


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_builds_the_layout_and_manifest(tmp_path, clean_dir):
    out = tmp_path / "set"
    assert main(["synth", str(clean_dir), str(out), "--seed", "3", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([*D.COMBINATIONS, "target", "manifest.jsonl"])
    assert sorted(p.name for p in (out / "target").iterdir()) == ["astro.png", "coffee.png"]
    recs = records(out)
    assert len(recs) == 2 * 7
    assert [(r["name"], r["combo"]) for r in recs[:7]] == [("astro", c) for c in D.COMBINATIONS]
    for r in recs:
        assert r["version"] == D.GENERATOR_VERSION and r["set_seed"] == 3
        assert r["input"] == f"{r['combo']}/input/{r['name']}.png" and r["target"] == f"target/{r['name']}.png"
        for kind, letter in (("haze", "H"), ("rain", "R"), ("noise", "N")):
            assert (r[kind] > 0) == (letter in r["combo"]) and r[kind] <= D.LEVEL_MAX[kind]
        for key in ("airlight", "angle", "length", "seed", "beta", "mean_transmission"):
            assert key in r
        arr = pixels(out / r["input"])
        assert arr.shape == (r["height"], r["width"], 3) and pixels_sha256(arr) == r["pixels_sha256"]
        # each degraded image is regenerated from the target and its manifest record, bit for bit
        clean = read_image(out / r["target"])
        again, _ = D.degrade(clean, haze=r["haze"], rain=r["rain"], noise=r["noise"], seed=r["seed"])
        assert np.array_equal(quantize(again), arr)
    assert np.array_equal(pixels(out / "target" / "astro.png"), skdata.astronaut()[20:76, 180:244])


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, clean_dir):
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        assert main(["synth", str(clean_dir), str(tmp_path / name), "--seed", seed, "--quiet"]) == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 2 + 14
    for f in files:
        assert np.array_equal(pixels(tmp_path / "a" / f), pixels(tmp_path / "b" / f)), f
    assert (tmp_path / "a" / "manifest.jsonl").read_bytes() == (tmp_path / "b" / "manifest.jsonl").read_bytes()
    assert not np.array_equal(pixels(tmp_path / "a" / "H+R+N/input/astro.png"),
                              pixels(tmp_path / "c" / "H+R+N/input/astro.png"))


def test_adding_an_image_leaves_the_others_unchanged(tmp_path, clean_dir):
    main(["synth", str(clean_dir), str(tmp_path / "a"), "--quiet"])
    Image.fromarray(skdata.rocket()[:40, :40].copy()).save(clean_dir / "aaa_first.png")
    main(["synth", str(clean_dir), str(tmp_path / "b"), "--quiet"])
    before = {(r["name"], r["combo"]): r["pixels_sha256"] for r in records(tmp_path / "a")}
    after = {(r["name"], r["combo"]): r["pixels_sha256"] for r in records(tmp_path / "b")}
    assert len(after) == 21 and all(after[k] == v for k, v in before.items())


def test_refuses_a_non_empty_folder_unless_forced(tmp_path, clean_dir, capsys):
    out = tmp_path / "set"
    assert main(["synth", str(clean_dir), str(out), "--quiet", "--combos", "H,N"]) == 0
    (out / "notes.txt").write_text("mine")
    (out / "H" / "input" / "stale.png").write_bytes(b"x")
    capsys.readouterr()
    assert main(["synth", str(clean_dir), str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--force" in err and str(out) in err and "\n" not in err
    assert not (out / "R").exists()
    assert main(["synth", str(clean_dir), str(out), "--quiet", "--force", "--combos", "r+n,H"]) == 0
    assert (out / "notes.txt").read_text() == "mine"  # not ours: kept
    assert not (out / "H" / "input" / "stale.png").exists() and not (out / "N").exists()
    assert sorted({r["combo"] for r in records(out)}) == ["H", "R+N"]


@pytest.mark.parametrize("argv,message", [
    (["{clean}"], "output folder"),
    (["{empty}", "{out}"], "no images"),
    (["{clean}", "{out}", "--combos", "H+Q"], "unknown degradation combination"),
    (["{clean}", "{out}", "--combos", ","], "names no combination"),
    (["{clean}", "{out}", "--preview", "{out}/p.png", "--tile", "8"], "--tile"),
])
def test_user_errors_are_one_line(tmp_path, clean_dir, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    fmt = {"clean": clean_dir, "empty": tmp_path / "empty", "out": tmp_path / "o"}
    assert main(["synth", *[a.format(**fmt) for a in argv], "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("interir synth: error:") and "\n" not in err


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("inside", ["target", "H+R+N/input", "N/input"])
def test_source_inside_the_replaced_set_is_refused_and_nothing_is_deleted(tmp_path, clean_dir, capsys, inside):
    out = tmp_path / "sf" / "set"
    assert main(["synth", str(clean_dir), str(out), "--quiet", "--combos", "H+R+N,N"]) == 0
    source = out / inside
    before = _tree(tmp_path / "sf")
    capsys.readouterr()
    assert main(["synth", str(source), str(out), "--seed", "1", "--force", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "lies inside" in err and "nothing was written" in err and "\n" not in err
    assert _tree(tmp_path / "sf") == before  # the set and its source images are all still there


def test_an_unreadable_source_leaves_the_output_as_it_was(tmp_path, clean_dir, capsys):
    out = tmp_path / "set"
    assert main(["synth", str(clean_dir), str(out), "--quiet", "--combos", "H"]) == 0
    before = _tree(out)
    (clean_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (clean_dir / "zz_truncated.jpg").write_bytes((clean_dir / "coffee.jpg").read_bytes()[:200])
    capsys.readouterr()
    assert main(["synth", str(clean_dir), str(out), "--quiet", "--force", "--combos", "H,N"]) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "zz_truncated.jpg" in err  # every unreadable source is named, not the first
    assert "2 of 4 source images cannot be read" in err and "nothing was written" in err
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean", "set"]  # no staging folder left behind


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(tmp_path, clean_dir):
    from interir.atomic import temp_name

    stale = tmp_path / temp_name("set", suffix="").replace(f"-{os.getpid()}-", "-999999999-")
    (stale / "target").mkdir(parents=True)
    assert main(["synth", str(clean_dir), str(tmp_path / "set"), "--quiet", "--combos", "N"]) == 0
    assert not stale.exists() and (tmp_path / "set" / "manifest.jsonl").is_file()


def test_duplicate_names_are_refused(tmp_path, clean_dir, capsys):
    Image.fromarray(skdata.rocket()[:30, :30].copy()).save(clean_dir / "astro.jpg")
    assert main(["synth", str(clean_dir), str(tmp_path / "o"), "--quiet"]) == 1
    assert "astro" in capsys.readouterr().err


def test_preview_grid(tmp_path, clean_dir):
    out = tmp_path / "prev.png"
    assert main(["synth", str(clean_dir / "astro.png"), "--preview", str(out), "--tile", "48"]) == 0
    grid = np.asarray(Image.open(out))
    pad, head, left, tile = 4, 18, 96, 48
    assert grid.shape == (head + 3 * (tile + pad), left + 8 * (tile + pad), 3)

    def cell(i, j):
        y, x = head + i * (tile + pad), left + j * (tile + pad)
        return grid[y:y + tile, x:x + tile].astype(int)

    clean = cell(0, 0)
    assert np.array_equal(clean, cell(2, 0))  # first column: the clean photo in every row
    for j in range(1, 8):  # every combination changes the photo, more at higher levels
        d = [np.abs(cell(i, j) - clean).mean() for i in range(3)]
        assert 0 < d[0] < d[1] < d[2], (j, d)
    small = tmp_path / "small.png"
    assert main(["synth", str(clean_dir), "--preview", str(small), "--tile", "48", "--colors", "64"]) == 0
    assert Image.open(small).mode == "P" and small.stat().st_size < out.stat().st_size


def test_python_dash_m_entry_point_with_progress_lines(tmp_path, clean_dir):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = tmp_path / "set"
    proc = subprocess.run([sys.executable, "-m", "interir", "synth", str(clean_dir), str(out), "--combos", "H+R+N,N"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # stderr is a pipe here: plain progress lines, not a tqdm bar's carriage-return redraws
    assert "synth: 4/4 img (100%)" in proc.stderr and "\r" not in proc.stderr
    assert "wrote 4 degraded images" in proc.stdout
    again = subprocess.run([sys.executable, "-m", "interir", "synth", str(clean_dir), str(out)],
                           capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "Traceback" not in again.stderr


def test_opencv_doc_photos(tmp_path):
    names = ["fruits.jpg", "baboon.jpg"]
    if not all((OPENCV_DATA / n).is_file() for n in names):
        pytest.skip(f"opencv-doc samples not installed ({OPENCV_DATA})")
    src = tmp_path / "src"
    src.mkdir()
    for n in names:
        Image.open(OPENCV_DATA / n).convert("RGB").crop((100, 100, 164, 148)).save(src / n.replace(".jpg", ".png"))
    assert main(["synth", str(src), str(tmp_path / "set"), "--quiet", "--combos", "H+R"]) == 0
    recs = records(tmp_path / "set")
    assert [r["name"] for r in recs] == ["baboon", "fruits"]
    for r in recs:
        clean = read_image(tmp_path / "set" / r["target"])
        deg = pixels(tmp_path / "set" / r["input"])
        assert deg.shape == (48, 64, 3) and not np.array_equal(deg, quantize(clean))
        again, _ = D.degrade(clean, haze=r["haze"], rain=r["rain"], noise=r["noise"], seed=r["seed"])
        assert np.array_equal(quantize(again), deg)


def test_16bit_and_grey_sources_regenerate_from_their_8bit_targets(tmp_path):
    from interir.data.imageio import write_image

    src = tmp_path / "src"
    rgb16 = (skdata.astronaut()[:30, 200:240].astype(np.uint16) * 257 + 77).astype(np.uint16)
    write_image(src / "deep.png", rgb16)
    write_image(src / "grey.png", skdata.camera()[:30, :40].copy())
    assert main(["synth", str(src), str(tmp_path / "set"), "--quiet", "--combos", "N,H+R"]) == 0
    for r in records(tmp_path / "set"):
        target = pixels(tmp_path / "set" / r["target"])
        assert target.dtype == np.uint8 and target.shape == (30, 40, 3)
        again, _ = D.degrade(read_image(tmp_path / "set" / r["target"]), haze=r["haze"], rain=r["rain"],
                             noise=r["noise"], seed=r["seed"])
        assert np.array_equal(quantize(again), pixels(tmp_path / "set" / r["input"]))


def test_preview_never_replaces_its_photo_and_replaces_a_file_only_with_force(tmp_path, clean_dir, capsys):
    photo = clean_dir / "astro.png"
    before = photo.read_bytes()
    for target in (photo, clean_dir / "astro.png"):
        assert main(["synth", str(photo), "--preview", str(target), "--force"]) == 1
        err = capsys.readouterr().err.strip()
        assert "also an input" in err and "\n" not in err
    assert main(["synth", str(clean_dir), "--preview", str(clean_dir / "coffee.jpg"), "--force"]) == 1
    assert "also an input" in capsys.readouterr().err
    assert photo.read_bytes() == before
    grid = tmp_path / "grid.png"
    grid.write_bytes(b"someone's file")
    assert main(["synth", str(photo), "--preview", str(grid)]) == 1
    assert "--force" in capsys.readouterr().err and grid.read_bytes() == b"someone's file"
    assert main(["synth", str(photo), "--preview", str(grid), "--force", "--tile", "32"]) == 0
    assert grid.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("argv, message", [
    (["{tmp}/set", "--preview", "{tmp}/g.png"], "not a folder"),  # a photo as the set's source
    (["--preview", "{tmp}/g.png", "--tile", "100000"], "--tile must be between"),
])
def test_preview_options_are_checked_before_anything_is_written(tmp_path, clean_dir, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["synth", str(clean_dir / "astro.png"), *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "g.png").exists() and not (tmp_path / "set").exists()


def test_force_replaces_only_a_set_that_synth_made(tmp_path, clean_dir, capsys):
    """A folder holding a user's own target/ (no manifest) is not an earlier set: --force refuses to delete it."""
    out = tmp_path / "mine"
    (out / "target").mkdir(parents=True)
    (out / "target" / "mine.png").write_bytes(b"keep me")
    assert main(["synth", str(clean_dir), str(out)]) == 1
    assert "target" in capsys.readouterr().err  # the refusal names what --force would replace
    assert main(["synth", str(clean_dir), str(out), "--force"]) == 1
    err = capsys.readouterr().err.strip()
    assert "no manifest.jsonl" in err and "\n" not in err
    assert (out / "target" / "mine.png").read_bytes() == b"keep me"


def test_a_combination_named_twice_is_refused(tmp_path, clean_dir, capsys):
    assert main(["synth", str(clean_dir), str(tmp_path / "set"), "--combos", "H,N+H,H"]) == 1
    err = capsys.readouterr().err.strip()
    assert "H more than once" in err and not (tmp_path / "set").exists()


@pytest.mark.parametrize("seed", ["-1", str(2**63), "99999999999999999999999", "1.5"])
def test_seeds_outside_what_the_generators_take_are_usage_errors(tmp_path, clean_dir, capsys, seed):
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", str(clean_dir), str(tmp_path / "set"), "--seed", seed])
    assert exit_info.value.code == 2 and "--seed" in capsys.readouterr().err
    assert not (tmp_path / "set").exists()
