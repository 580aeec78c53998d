"""`interir eval`: the Table-1 rows of a checkpoint on a synth set, a paired folder, and error paths; the per-image
table, --save-images, --tile/--overlap, the ×8 --self-ensemble, comparisons of several checkpoints and --figure
(docs/evaluation.md)."""
import csv
import json

import pytest
import torch

import interir
from interir.checkpoint import save_weights
from interir.cli import main
from interir.data.datasets import load_synthetic_testset
from interir.data.synth import build_testset
from interir.ensemble import TRANSFORMS, geometric_transform, inverse_geometric_transform, self_ensemble
from interir.eval_core import ForwardOptions, evaluate_sets, restore_for_eval
from interir.eval_report import FigureRow, centre_crop, comparison_figure, figure_keys
from interir.metrics import psnr
from interir.model import build
from tests.test_train import _photos

COMBOS = ["H+R+N", "H+R", "H+N", "R+N", "H", "R", "N"]


def _read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def testset(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    build_testset(_photos(root / "clean", 2, 40), root / "set", seed=3, progress=False)
    return root


def test_eval_cli_writes_table_one(testset, tmp_path, capsys):
    ckpt = save_weights(tmp_path / "tiny.safetensors", interir.build_model("tiny"))
    out = tmp_path / "results"
    assert main(["eval", str(ckpt), "--data", str(testset / "set"), "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    rows = _read_csv(out / "results.csv")
    assert [r["set"] for r in rows] == COMBOS + ["average"]
    assert all(r["images"] == "2" for r in rows[:-1]) and rows[-1]["images"] == "14"
    saved = json.loads((out / "results.json").read_text())
    assert saved["model"]["preset"] == "tiny" and saved["colour_space"] == "RGB"
    # the input columns are the metric of the degraded files themselves, averaged over the set
    sets = load_synthetic_testset(testset / "set")
    item = sets["N"][0]
    expected = (psnr(item["input"], item["target"]) + psnr(sets["N"][1]["input"], sets["N"][1]["target"])) / 2
    assert float(rows[COMBOS.index("N")]["psnr_input"]) == pytest.approx(expected, abs=1e-9)
    avg = sum(float(r["psnr"]) for r in rows[:-1]) / 7
    assert float(rows[-1]["psnr"]) == pytest.approx(avg, abs=1e-9)
    assert "| average |" in printed


def test_evaluate_sets_perfect_model_gives_infinite_psnr(testset):
    class Oracle(torch.nn.Module):
        """Returns the clean image: PSNR must be inf and SSIM 1 for every set."""

        def __init__(self, sets):
            super().__init__()
            self.lookup = {}
            for ds in sets.values():
                for i in range(len(ds)):
                    it = ds[i]
                    self.lookup[it["input"].sum().item()] = it["target"]

        def forward(self, x):
            return self.lookup[x[0].sum().item()][None]

    sets = load_synthetic_testset(testset / "set")
    rows = evaluate_sets(Oracle(sets), sets, progress=False)
    assert all(r["psnr"] == float("inf") and r["ssim"] == pytest.approx(1.0) for r in rows)


def test_eval_synthetic_and_paired_folder(testset, tmp_path):
    ckpt = save_weights(tmp_path / "t.safetensors", interir.build_model("tiny"))
    assert main(["eval", str(ckpt), "--synthetic", str(testset / "clean"), "--out", str(tmp_path / "a"),
                 "--max-images", "1"]) == 0
    assert len(_read_csv(tmp_path / "a" / "results.csv")) == 8
    assert main(["eval", str(ckpt), "--data", str(testset / "set" / "H"), "--out", str(tmp_path / "b"),
                 "--y-channel"]) == 0
    rows = _read_csv(tmp_path / "b" / "results.csv")
    assert [r["set"] for r in rows] == ["H", "average"]


@pytest.mark.parametrize("argv, message", [
    (["eval", "{tmp}/missing.safetensors", "--data", "{set}"], "checkpoint not found"),
    (["eval", "{ckpt}", "--data", "{tmp}/nowhere"], "dataset folder not found"),
    (["eval", "{bad}", "--data", "{set}"], "not a readable safetensors checkpoint"),
    (["eval", "{ckpt}", "--data", "{set}", "--crop-border", "-1"], "--crop-border"),
    (["eval", "{ckpt}", "--data", "{tmp}"], "no input/target sub-folders"),
    (["eval", "{ckpt}", "--data", "{set}", "--max-images", "0"], "--max-images"),
    (["eval", "{ckpt}", "--data", "{set}", "--tile", "30"], "--tile must be a multiple of 4"),
    (["eval", "{ckpt}", "--data", "{set}", "--tile", "-4"], "--tile must be ≥ 0"),
    (["eval", "{ckpt}", "--data", "{set}", "--tile", "32", "--overlap", "8"], "--tile 32 is too small for --overlap 8"),
    (["eval", "{ckpt}", "--data", "{set}", "--tile", "64", "--overlap", "-1"], "--overlap must be ≥ 0"),
    (["eval", "{ckpt}", "--data", "{set}", "--overlap", "8"], "--overlap only applies with --tile"),
    (["eval", "{dgunet}", "--data", "{set}", "--tile", "36", "--overlap", "4"], "--tile must be a multiple of 8"),
    (["eval", "{ckpt}", "--data", "{set}", "--figure", "{tmp}/crops.txt"], "--figure"),
    (["eval", "{ckpt}", "--data", "{set}", "--figure", "{tmp}"], "--figure"),
    (["eval", "{ckpt}", "--data", "{set}", "--save-images", "{ckpt}"], "--save-images"),
    (["eval", "{ckpt}", "--data", "{set}", "--crop-border", "20"], "too small to score after --crop-border 20"),
    (["eval", "{ckpt}", "--data", "{set}", "--crop-border", "15"], "SSIM needs at least 11×11"),
    (["eval", "{ckpt}", "{bad}", "--data", "{set}"], "not a readable safetensors checkpoint"),
    (["eval", "{ckpt}", "--data", "{ckpt}"], "is a file; give the folder"),
])
def test_eval_errors_are_one_line(testset, tmp_path, capsys, argv, message):
    ckpt = save_weights(tmp_path / "t.safetensors", interir.build_model("tiny"))
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    subs = {"{tmp}": str(tmp_path), "{set}": str(testset / "set"), "{ckpt}": str(ckpt),
            "{bad}": str(tmp_path / "bad.safetensors")}
    if "{dgunet}" in argv:
        subs["{dgunet}"] = str(save_weights(tmp_path / "dg.safetensors", build("dgunet-tiny")))
    args = []
    for a in argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        args.append(a)
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert "input_dir=" not in err  # no advice about options the command line does not have
    assert not list(tmp_path.glob("**/results.json"))  # refused before any result was written


def test_eval_never_silently_replaces_earlier_results(testset, tmp_path, capsys):
    ckpt = save_weights(tmp_path / "tiny.safetensors", interir.build_model("tiny"))
    out = tmp_path / "results"
    argv = ["eval", str(ckpt), "--data", str(testset / "set"), "--out", str(out), "--device", "cpu",
            "--max-images", "1"]
    assert main(argv) == 0
    (out / "results.json").write_text("an earlier run's figures")
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "--overwrite" in err and "results" in err and "\n" not in err
    assert (out / "results.json").read_text() == "an earlier run's figures"
    assert main(argv + ["--overwrite"]) == 0
    assert json.loads((out / "results.json").read_text())["rows"]


def test_eval_never_silently_replaces_per_image_results_or_figure(testset, tmp_path, capsys):
    """per_image.csv/json and the --figure fall under the same rule as results.csv/json."""
    ckpt = save_weights(tmp_path / "tiny.safetensors", interir.build_model("tiny"))
    out, figure = tmp_path / "results", tmp_path / "crops.png"
    argv = ["eval", str(ckpt), "--data", str(testset / "set" / "N"), "--out", str(out), "--device", "cpu",
            "--max-images", "1"]
    for name in ("per_image.csv", "per_image.json"):
        out.mkdir(exist_ok=True)
        (out / name).write_text("an earlier run's table")
        capsys.readouterr()
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert name in err and "--overwrite" in err and "\n" not in err
        assert (out / name).read_text() == "an earlier run's table" and not (out / "results.json").exists()
        (out / name).unlink()
    figure.write_bytes(b"an earlier figure")
    assert main(argv + ["--figure", str(figure)]) == 1
    err = capsys.readouterr().err.strip()
    assert "--figure" in err and "--overwrite" in err and "\n" not in err
    assert figure.read_bytes() == b"an earlier figure" and not (out / "results.json").exists()
    assert main(argv + ["--figure", str(figure), "--overwrite"]) == 0
    assert figure.read_bytes().startswith(b"\x89PNG")


# ----------------------------------------------------------------------------- the ×8 self-ensemble


def test_the_eight_transforms_are_distinct_and_their_inverses_exact():
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)  # no symmetry at all
    assert len(TRANSFORMS) == 8 and TRANSFORMS[0] == (0, False)
    moved = [geometric_transform(x, k, flip) for k, flip in TRANSFORMS]
    for (k, flip), m in zip(TRANSFORMS, moved):
        assert m.shape == ((2, 3, 7, 5) if k % 2 else (2, 3, 5, 7))
        assert torch.equal(inverse_geometric_transform(m, k, flip), x)  # exactly, not approximately
    assert torch.equal(moved[0], x)
    flat = {tuple(m.flatten().tolist()) + tuple(m.shape) for m in moved}
    assert len(flat) == 8  # the whole group D4: no transform repeated, none missing
    assert any(torch.equal(m, x.flip(-1)) for m in moved) and any(torch.equal(m, x.flip(-2)) for m in moved)
    assert any(torch.equal(m, x.transpose(-2, -1)) for m in moved)


class _Pointwise(torch.nn.Module):
    """A per-pixel network (1×1 conv + sigmoid): equivariant to every flip and rotation."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return torch.sigmoid(self.conv(x))


@pytest.mark.parametrize("tile, overlap", [(0, 0), (12, 2)])
def test_self_ensemble_of_a_symmetric_model_is_its_plain_output(tile, overlap):
    model = _Pointwise().eval()
    x = torch.rand(3, 17, 30)  # not square: the odd rotations feed it 30×17
    options = ForwardOptions(tile, overlap, self_ensemble=True)
    plain = restore_for_eval(model, x)
    ensembled = restore_for_eval(model, x, options=options)
    assert ensembled.shape == plain.shape == (3, 17, 30)
    torch.testing.assert_close(ensembled, plain, atol=1e-6, rtol=0)


def test_self_ensemble_maps_each_output_back_with_its_inverse():
    """A one-pixel shift to the right, seen through the 8 symmetries, is a shift in each of the 4 directions
    (twice each): the ensemble is their mean, and differs from the plain output."""
    def shift(x):
        return torch.roll(x, 1, dims=-1)

    x = torch.rand(1, 3, 6, 9)
    four = sum(torch.roll(x, s, dims=d) for s in (1, -1) for d in (-1, -2)) / 4
    torch.testing.assert_close(self_ensemble(shift, x), four, atol=1e-6, rtol=0)
    assert (self_ensemble(shift, x) - shift(x)).abs().max() > 0.05


def test_self_ensemble_of_interir_on_a_non_square_image():
    model = interir.build_model("tiny").eval()
    x = torch.rand(3, 18, 26)  # neither side a multiple of 4: the network pads each orientation itself
    plain = restore_for_eval(model, x)
    ensembled = restore_for_eval(model, x, options=ForwardOptions(self_ensemble=True))
    assert ensembled.shape == (3, 18, 26) and 0 <= ensembled.min() and ensembled.max() <= 1
    assert (ensembled - plain).abs().max() > 1e-3  # InterIR is not symmetric: the ensemble changes the output


# ------------------------------------------------------------------------------------------------ tiling


@pytest.fixture(scope="module")
def wide_set(tmp_path_factory):
    """An `interir synth` set (combinations N and H+R+N) of two non-square crops: a_small 38×54 (neither side a
    multiple of 4, so the networks pad it, in both orientations) and b_wide 64×80."""
    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("wide")
    (root / "clean").mkdir()
    Image.fromarray(data.chelsea()[80:118, 120:174]).save(root / "clean" / "a_small.png")
    Image.fromarray(data.astronaut()[100:164, 150:230]).save(root / "clean" / "b_wide.png")
    build_testset(root / "clean", root / "set", seed=1, combos=["N", "H+R+N"], progress=False)
    return root / "set"


def test_tiled_metrics_agree_with_untiled_ones(wide_set):
    """The tiny network with random weights, tiles of 48 with overlap 8 (6 tiles of the 64×80 image): InterIR is
    not local (docs/evaluation.md), so tiling approximates, but closely."""
    from interir.data.datasets import PairedFolderDataset

    sets = {"N": PairedFolderDataset(pairs=load_synthetic_testset(wide_set)["N"].pairs[1:])}  # b_wide
    model = interir.build_model("tiny").eval()
    seen = []
    model.register_forward_pre_hook(lambda mod, args: seen.append(tuple(args[0].shape[-2:])))
    whole = evaluate_sets(model, sets, max_images=1, progress=False)
    assert seen == [(64, 80)]
    seen.clear()
    tiled = evaluate_sets(model, sets, max_images=1, progress=False, options=ForwardOptions(48, 8))
    assert len(seen) == 6 and all(h <= 48 and w <= 48 for h, w in seen)
    assert tiled[0]["psnr"] == pytest.approx(whole[0]["psnr"], abs=0.1)
    assert tiled[0]["ssim"] == pytest.approx(whole[0]["ssim"], abs=0.01)
    assert tiled[0]["psnr_input"] == whole[0]["psnr_input"]


def test_tiles_reproduce_a_local_model_exactly():
    """A stack of two 3×3 convolutions sees 2 pixels around each output: overlap 4 makes tiling exact."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 3, 3, padding=1), torch.nn.Sigmoid()).eval()
    x = torch.rand(3, 44, 60)
    whole = restore_for_eval(model, x)
    tiled = restore_for_eval(model, x, options=ForwardOptions(24, 4))
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)
    both = restore_for_eval(model, x, options=ForwardOptions(24, 4, self_ensemble=True))
    assert (both - whole).abs().max() > 1e-3  # a 3×3 conv with random weights is not symmetric


def test_eval_cli_tiles_and_self_ensembles(wide_set, tmp_path, monkeypatch):
    """--tile/--overlap/--self-ensemble reach the tiler and the ensemble, on a non-square image, and the
    saved results say how the images were restored."""
    import interir.ensemble
    import interir.tiling

    calls = {"tiles": [], "ensembles": 0}
    real_tiled, real_ensemble = interir.tiling.restore_tiled, interir.ensemble.self_ensemble

    def spy_tiled(model, image, tile, overlap, **kw):
        calls["tiles"].append((tile, overlap, tuple(image.shape[-2:])))
        return real_tiled(model, image, tile, overlap, **kw)

    def spy_ensemble(forward, x):
        calls["ensembles"] += 1
        return real_ensemble(forward, x)

    monkeypatch.setattr(interir.tiling, "restore_tiled", spy_tiled)
    monkeypatch.setattr(interir.ensemble, "self_ensemble", spy_ensemble)
    ckpt = save_weights(tmp_path / "tiny.safetensors", interir.build_model("tiny"))
    out = tmp_path / "res"
    assert main(["eval", str(ckpt), "--data", str(wide_set / "N"), "--out", str(out), "--device", "cpu",
                 "--tile", "48", "--overlap", "4", "--self-ensemble", "--max-images", "1"]) == 0
    assert calls["ensembles"] == 1 and len(calls["tiles"]) == 8
    assert {(t, o) for t, o, _ in calls["tiles"]} == {(48, 4)}
    assert {s for *_, s in calls["tiles"]} == {(38, 54), (54, 38)}  # the rotations swap H and W
    saved = json.loads((out / "results.json").read_text())
    assert (saved["tile"], saved["overlap"], saved["self_ensemble"]) == (48, 4, True)


# ------------------------------------------------------------------------------ per-image table, images


def test_per_image_table_matches_the_summary(wide_set, tmp_path):
    ckpt = save_weights(tmp_path / "tiny.safetensors", interir.build_model("tiny"))
    out = tmp_path / "res"
    assert main(["eval", str(ckpt), "--data", str(wide_set), "--out", str(out), "--device", "cpu"]) == 0
    rows = _read_csv(out / "results.csv")
    per = _read_csv(out / "per_image.csv")
    assert list(per[0]) == ["model", "set", "name", "psnr_input", "ssim_input", "psnr", "ssim", "seconds"]
    assert len(per) == 4 and {r["model"] for r in per} == {"tiny"}
    assert [(r["set"], r["name"]) for r in per] == [("H+R+N", "a_small.png"), ("H+R+N", "b_wide.png"),
                                                    ("N", "a_small.png"), ("N", "b_wide.png")]
    assert all(float(r["seconds"]) > 0 for r in per)
    for row in rows[:-1]:
        mine = [r for r in per if r["set"] == row["set"]]
        for key in ("psnr_input", "ssim_input", "psnr", "ssim"):
            assert float(row[key]) == pytest.approx(sum(float(r[key]) for r in mine) / len(mine), abs=1e-9)
    saved = json.loads((out / "per_image.json").read_text())
    assert len(saved["rows"]) == 4 and saved["model"]["preset"] == "tiny"
    assert saved["rows"][0]["psnr"] == pytest.approx(float(per[0]["psnr"]), abs=1e-12)


@pytest.fixture
def paired_8_and_16_bit(tmp_path):
    """A paired folder (input/, target/): a.png 16-bit RGB, b.png 8-bit RGB, c.jpg 8-bit, non-square."""
    from skimage import data

    from interir.data.imageio import write_image

    root = tmp_path / "pairs"
    g = torch.Generator().manual_seed(0)
    for name, photo, bits in (("a.png", "astronaut", 16), ("b.png", "coffee", 8), ("c.jpg", "rocket", 8)):
        clean = torch.from_numpy(getattr(data, photo)()[100:136, 100:148].copy()).permute(2, 0, 1).float() / 255
        noisy = (clean + 0.05 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
        write_image(root / "input" / name, noisy, bits=bits)
        write_image(root / "target" / name, clean, bits=bits)
    return root


def test_save_images_keeps_names_formats_and_bit_depths(paired_8_and_16_bit, tmp_path, capsys):
    from interir.data.imageio import load_image

    ckpt = save_weights(tmp_path / "tiny.safetensors", interir.build_model("tiny"))
    saved_dir = tmp_path / "restored"
    saved_dir.mkdir()
    (saved_dir / "notes.txt").write_text("mine")
    argv = ["eval", str(ckpt), "--data", str(paired_8_and_16_bit), "--device", "cpu",
            "--save-images", str(saved_dir)]
    assert main(argv + ["--out", str(tmp_path / "r1")]) == 0
    per = {r["name"]: r for r in _read_csv(tmp_path / "r1" / "per_image.csv")}
    assert sorted(per) == ["a.png", "b.png", "c.jpg"]
    for name, bits in (("a.png", 16), ("b.png", 8), ("c.jpg", 8)):
        path = saved_dir / "pairs" / name
        img, got = load_image(path, channels=None)
        assert got == bits and img.shape == (3, 36, 48), name
        target = load_image(paired_8_and_16_bit / "target" / name)[0]
        if name != "c.jpg":  # JPEG is lossy; the PNGs hold what was measured
            assert psnr(img, target) == pytest.approx(float(per[name]["psnr"]), abs=0.01)
    a16 = (load_image(saved_dir / "pairs" / "a.png")[0] * 65535).round()
    assert bool(((a16 % 257) != 0).any())  # real 16-bit values, not 8-bit ones scaled
    # a second run refuses to replace them, in one line, before any work
    before = {p: p.read_bytes() for p in saved_dir.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(argv + ["--out", str(tmp_path / "r2")]) == 1
    err = capsys.readouterr().err.strip()
    assert "--save-images" in err and "--overwrite" in err and "\n" not in err
    assert not (tmp_path / "r2").exists()
    assert {p: p.read_bytes() for p in saved_dir.rglob("*") if p.is_file()} == before
    assert main(argv + ["--out", str(tmp_path / "r3"), "--overwrite"]) == 0
    assert (saved_dir / "notes.txt").read_text() == "mine"
    assert not [p for p in saved_dir.rglob("*") if "interir-tmp" in p.name]


def test_save_images_never_writes_over_the_test_set(tmp_path, capsys):
    """Rain100's flat layout (rain-N.png beside norain-N.png): DIR/SET/NAME with DIR = the set's parent is the
    input itself, which is refused even with --overwrite, and the input is left as it was."""
    from interir.data.imageio import write_image

    root = tmp_path / "Rain100L"
    write_image(root / "rain-1.png", torch.rand(3, 24, 32))
    write_image(root / "norain-1.png", torch.rand(3, 24, 32))
    before = (root / "rain-1.png").read_bytes()
    ckpt = save_weights(tmp_path / "tiny.safetensors", interir.build_model("tiny"))
    assert main(["eval", str(ckpt), "--data", str(root), "--device", "cpu", "--overwrite",
                 "--save-images", str(tmp_path), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip()
    assert "--save-images" in err and "rain-1.png" in err and "\n" not in err
    assert (root / "rain-1.png").read_bytes() == before and not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------ comparison and figure


def test_compare_an_interir_and_a_dgunet_checkpoint(wide_set, tmp_path, capsys):
    from interir.checkpoint import load_model

    a = save_weights(tmp_path / "mine.safetensors", interir.build_model("tiny"))
    b = save_weights(tmp_path / "baseline.safetensors", build("dgunet-tiny"))
    out, figure, images = tmp_path / "cmp", tmp_path / "crops.png", tmp_path / "restored"
    assert main(["eval", str(a), str(b), "--data", str(wide_set), "--out", str(out), "--device", "cpu",
                 "--max-images", "1", "--figure", str(figure), "--save-images", str(images)]) == 0
    printed = capsys.readouterr().out
    assert "mine PSNR / SSIM" in printed and "baseline PSNR / SSIM" in printed and "baseline - mine" in printed
    saved = json.loads((out / "results.json").read_text())
    assert [m["network"]["name"] for m in saved["models"]] == ["interir", "dgunet"]
    rows = saved["rows"]
    assert [(r["model"], r["set"]) for r in rows] == [(m, s) for m in ("mine", "baseline")
                                                      for s in ("H+R+N", "N", "average")]
    by = {(r["model"], r["set"]): r for r in rows}
    for s in ("H+R+N", "N", "average"):
        assert by[("mine", s)]["delta_psnr"] == 0
        assert by[("baseline", s)]["delta_psnr"] == pytest.approx(by[("baseline", s)]["psnr"]
                                                                  - by[("mine", s)]["psnr"], abs=1e-12)
        assert by[("baseline", s)]["psnr_input"] == by[("mine", s)]["psnr_input"]
    # each model's rows are what that model gives alone
    sets = load_synthetic_testset(wide_set)
    alone = evaluate_sets(load_model(b)[0], sets, max_images=1, progress=False)
    assert [r["psnr"] for r in alone] == [by[("baseline", r["set"])]["psnr"] for r in alone]
    assert by[("baseline", "average")]["delta_psnr"] != 0
    per = _read_csv(out / "per_image.csv")
    assert [(r["model"], r["set"]) for r in per] == [(m, s) for m in ("mine", "baseline") for s in ("H+R+N", "N")]
    assert sorted(p.relative_to(images).as_posix() for p in images.rglob("*.png")) == [
        "baseline/H+R+N/a_small.png", "baseline/N/a_small.png", "mine/H+R+N/a_small.png", "mine/N/a_small.png"]
    from PIL import Image

    with Image.open(figure) as im:
        assert im.format == "PNG" and im.width > 4 * 54 and im.height > 2 * 38  # 4 columns, 2 rows


def test_centre_crop_and_figure_rows():
    img = torch.arange(200 * 300, dtype=torch.float32).reshape(1, 200, 300)
    crop = centre_crop(img)
    assert crop.shape == (1, 192, 192) and crop[0, 0, 0] == 4 * 300 + 54
    assert centre_crop(img[:, :100, :50]).shape == (1, 100, 50)
    sets = {"H": [0, 1, 2], "N": [0, 1], "R": [0, 1], "N+R": [0]}
    assert figure_keys(sets, None) == [("H", 0), ("N", 1), ("R", 0), ("N+R", 0)]
    assert figure_keys(sets, None, rows=7) == [("H", 0), ("N", 1), ("R", 0), ("N+R", 0), ("H", 1), ("N", 0),
                                               ("R", 1)]
    assert figure_keys(sets, 1) == [("H", 0), ("N", 0), ("R", 0), ("N+R", 0)]


def test_comparison_figure_puts_input_models_target_in_columns():
    """Solid crops of distinct colours: their centres must run left to right in the order input, each model,
    target, and the second image's row below the first's."""
    import numpy as np

    def solid(r, g, b):
        return torch.tensor([r, g, b], dtype=torch.float32).view(3, 1, 1).expand(3, 30, 40) / 255

    colours = [[(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0)],
               [(0, 250, 250), (250, 0, 250), (120, 60, 0), (0, 120, 60)]]
    rows = []
    for i, (inp, m1, m2, tgt) in enumerate(colours):
        rows.append(FigureRow("N", f"img{i}.png", solid(*inp), solid(*tgt), 20.0,
                              {"first": (solid(*m1), 21.0), "second": (solid(*m2), 22.0)}))
    arr = np.asarray(comparison_figure(rows, ["first", "second"]))
    centres = [[np.argwhere((arr == c).all(-1)).mean(0) for c in row] for row in colours]
    for row in centres:
        xs = [c[1] for c in row]
        assert xs == sorted(xs) and len(set(xs)) == 4
    assert all(b[0] > a[0] for a, b in zip(centres[0], centres[1]))


def test_eval_never_writes_over_an_image_of_the_test_set(testset, tmp_path, capsys):
    """--figure naming one of the set's inputs is refused even with --overwrite, before any image is restored."""
    ckpt = save_weights(tmp_path / "tiny.safetensors", interir.build_model("tiny"))
    victim = sorted((testset / "set" / "N" / "input").iterdir())[0]
    before = victim.read_bytes()
    argv = ["eval", str(ckpt), "--data", str(testset / "set" / "N"), "--out", str(tmp_path / "results"),
            "--device", "cpu", "--figure", str(victim), "--overwrite"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "is an image of the test set" in err and "--figure" in err and "\n" not in err
    assert victim.read_bytes() == before and not (tmp_path / "results").exists()
