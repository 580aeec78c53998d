"""`interir restore`: one output per input with the input's size, mode and bit depth; alpha bit-exact; inputs and
existing outputs never replaced unless asked; corrupt files named and skipped; one-line errors."""
import os
import shutil

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

import interir
from interir.checkpoint import save_weights
from interir.cli import main
from interir.data.imageio import load_image, write_image
from interir.infer import LUMA_BT601, restore_file, restore_image


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return save_weights(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", interir.build_model("tiny"))


def _photo(h=37, w=45):
    from skimage import data

    return data.astronaut()[150:150 + h, 200:200 + w].copy()


def _grey(h=41, w=35):
    from skimage import data

    return data.camera()[100:100 + h, 200:200 + w].copy()


def make_inputs(folder):
    """One file of each kind; returns {name: (mode, bits)} as written."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = _photo()
    Image.fromarray(rgb).save(folder / "rgb8.png")
    Image.fromarray(_grey().astype(np.uint16) * 257 + 3).save(folder / "grey16.png")
    alpha = (np.arange(rgb.shape[0] * rgb.shape[1]).reshape(rgb.shape[:2]) * 7 % 256).astype(np.uint8)
    Image.fromarray(np.dstack([rgb, alpha])).save(folder / "rgba.png")
    Image.fromarray(rgb).save(folder / "photo.jpg", quality=92)
    Image.fromarray(rgb).save(folder / "scan.tif")
    write_image(folder / "rgb16.png", rgb.astype(np.uint16) * 257)
    Image.fromarray(_grey()).save(folder / "grey8.tif")
    return {"rgb8.png": ("RGB", 8), "grey16.png": ("I;16", 16), "rgba.png": ("RGBA", 8), "photo.jpg": ("RGB", 8),
            "scan.tif": ("RGB", 8), "rgb16.png": (None, 16), "grey8.tif": ("L", 8)}


def run_cli(capsys, *argv):
    code = main(["restore", *map(str, argv)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _no_temp_files(folder):
    return not [p for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


def test_restore_keeps_size_mode_and_bit_depth(tmp_path, ckpt, capsys):
    kinds = make_inputs(tmp_path / "in")
    code, out, err = run_cli(capsys, tmp_path / "in", "-o", tmp_path / "out", "-c", ckpt, "-q")
    assert code == 0, err
    assert "restored 7 of 7" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(kinds)
    for name, (mode, bits) in kinds.items():
        src, dst = tmp_path / "in" / name, tmp_path / "out" / name
        a, abits = load_image(src, channels=None)
        b, bbits = load_image(dst, channels=None)
        assert b.shape == a.shape and bbits == abits == bits, name
        if mode is not None:
            with Image.open(dst) as im:
                assert im.mode == mode, name
    with Image.open(tmp_path / "in" / "rgba.png") as a, Image.open(tmp_path / "out" / "rgba.png") as b:
        assert np.array_equal(np.asarray(a)[..., 3], np.asarray(b)[..., 3])  # alpha bit-exact
    with Image.open(tmp_path / "out" / "photo.jpg") as im:
        assert im.format == "JPEG"
    with Image.open(tmp_path / "out" / "scan.tif") as im:
        assert im.format == "TIFF"
    assert _no_temp_files(tmp_path / "out")


def test_identity_model_round_trips_every_format_exactly(tmp_path):
    """With a model that changes nothing, every lossless output equals its input pixel for pixel: the read,
    grey→RGB→luma, alpha and quantisation path loses nothing."""
    kinds = make_inputs(tmp_path / "in")
    ident = nn.Identity()
    for name in kinds:
        if name.endswith(".jpg"):
            continue
        restore_file(ident, tmp_path / "in" / name, tmp_path / "out" / name)
        a, _ = load_image(tmp_path / "in" / name, channels=None)
        b, _ = load_image(tmp_path / "out" / name, channels=None)
        assert torch.equal(a, b), name


def test_grey_is_written_back_as_bt601_luma():
    class Tint(nn.Module):  # turns a grey image into a coloured one
        def forward(self, x):
            return x * torch.tensor([1.0, 0.5, 0.25]).view(1, 3, 1, 1)

    grey = torch.rand(1, 9, 11)
    out = restore_image(Tint(), grey, tile=0)
    w = torch.tensor(LUMA_BT601)
    expected = grey * float(w @ torch.tensor([1.0, 0.5, 0.25]))
    assert out.shape == (1, 9, 11) and torch.allclose(out, expected, atol=1e-6)
    ga = torch.rand(2, 9, 11)
    out = restore_image(Tint(), ga, tile=0)
    assert out.shape == (2, 9, 11) and torch.equal(out[1], ga[1])


def test_bits_option(tmp_path, ckpt, capsys):
    make_inputs(tmp_path / "in")
    code, _, err = run_cli(capsys, tmp_path / "in" / "grey16.png", tmp_path / "in" / "rgb8.png",
                           tmp_path / "in" / "photo.jpg", "-o", tmp_path / "o16", "-c", ckpt, "--bits", "16", "-q")
    assert code == 0, err
    assert load_image(tmp_path / "o16" / "rgb8.png")[1] == 16
    assert load_image(tmp_path / "o16" / "photo.jpg")[1] == 8 and "no 16-bit mode" in err
    code, _, err = run_cli(capsys, tmp_path / "in" / "grey16.png", "-o", tmp_path / "o8", "-c", ckpt, "--bits", "8",
                           "-q")
    assert code == 0, err
    assert load_image(tmp_path / "o8" / "grey16.png")[1] == 8


def test_relative_names_recursive_and_suffix(tmp_path, ckpt, capsys):
    (tmp_path / "in" / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(_photo()).save(tmp_path / "in" / "a.png")
    Image.fromarray(_photo(20, 24)).save(tmp_path / "in" / "sub" / "deeper" / "b.png")
    (tmp_path / "in" / "notes.txt").write_text("not an image")  # ignored in folders
    code, _, err = run_cli(capsys, tmp_path / "in", "-o", tmp_path / "flat", "-c", ckpt, "-q")
    assert code == 0, err
    assert [p.name for p in (tmp_path / "flat").rglob("*")] == ["a.png"]
    code, _, err = run_cli(capsys, tmp_path / "in", "-r", "-o", tmp_path / "rec", "-c", ckpt, "--suffix", "_x", "-q")
    assert code == 0, err
    assert sorted(str(p.relative_to(tmp_path / "rec")) for p in (tmp_path / "rec").rglob("*.png")) == [
        "a_x.png", os.path.join("sub", "deeper", "b_x.png")]


def test_never_overwrites_an_input(tmp_path, ckpt, capsys):
    Image.fromarray(_photo()).save(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    for extra in ([], ["--overwrite"]):
        code, _, err = run_cli(capsys, tmp_path / "a.png", "-o", tmp_path, "-c", ckpt, "-q", *extra)
        assert code == 1
        assert err.strip().count("\n") == 0 and "would overwrite the input" in err
        assert (tmp_path / "a.png").read_bytes() == before
    # through another spelling of the same folder, and as one of several inputs
    os.symlink(tmp_path, tmp_path / "link")
    code, _, err = run_cli(capsys, tmp_path / "a.png", "-o", tmp_path / "link", "-c", ckpt, "-q", "--overwrite")
    assert code == 1 and (tmp_path / "a.png").read_bytes() == before
    # --in-place is the one way to replace inputs; with --suffix it writes beside them
    code, _, err = run_cli(capsys, tmp_path / "a.png", "--in-place", "--suffix", "_r", "-c", ckpt, "-q")
    assert code == 0, err
    assert (tmp_path / "a_r.png").is_file() and (tmp_path / "a.png").read_bytes() == before
    code, _, err = run_cli(capsys, tmp_path / "a.png", "--in-place", "-c", ckpt, "-q")
    assert code == 0, err
    assert (tmp_path / "a.png").read_bytes() != before
    assert _no_temp_files(tmp_path)


def test_existing_outputs_untouched_without_overwrite(tmp_path, ckpt, capsys):
    (tmp_path / "in").mkdir()
    Image.fromarray(_photo()).save(tmp_path / "in" / "a.png")
    Image.fromarray(_photo(30, 30)).save(tmp_path / "in" / "b.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"keep me")
    code, _, err = run_cli(capsys, tmp_path / "in", "-o", tmp_path / "out", "-c", ckpt, "-q")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "a.png" in lines[0] and "exists" in lines[0]
    assert (tmp_path / "out" / "a.png").read_bytes() == b"keep me"
    assert load_image(tmp_path / "out" / "b.png")[0].shape == (3, 30, 30)
    code, out, err = run_cli(capsys, tmp_path / "in", "-o", tmp_path / "out", "-c", ckpt, "-q", "--skip-existing")
    assert code == 0 and "skipped" in out
    assert (tmp_path / "out" / "a.png").read_bytes() == b"keep me"
    code, _, err = run_cli(capsys, tmp_path / "in", "-o", tmp_path / "out", "-c", ckpt, "-q", "--overwrite")
    assert code == 0, err
    assert load_image(tmp_path / "out" / "a.png")[0].shape == (3, 37, 45)


def test_corrupt_and_unsupported_files_are_named_and_skipped(tmp_path, ckpt, capsys):
    (tmp_path / "in").mkdir()
    Image.fromarray(_photo()).save(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    Image.fromarray(_photo()).save(tmp_path / "in" / "cut.jpg")
    data = (tmp_path / "in" / "cut.jpg").read_bytes()
    (tmp_path / "in" / "cut.jpg").write_bytes(data[: len(data) // 3])  # truncated JPEG
    (tmp_path / "notes.txt").write_text("hello")
    code, out, err = run_cli(capsys, tmp_path / "in", tmp_path / "notes.txt", "-o", tmp_path / "out", "-c", ckpt, "-q")
    assert code == 1
    lines = err.strip().splitlines()
    named = {n for n in ("broken.png", "cut.jpg", "notes.txt") if any(n in line for line in lines)}
    assert named == {"broken.png", "cut.jpg", "notes.txt"} and len(lines) == 3, lines
    assert "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png"]
    assert "restored 1 of 4" in out and "3 failed" in out


@pytest.mark.parametrize("argv, needle", [
    (["{missing}", "-o", "{out}"], "input not found"),
    (["{img}", "-o", "{out}", "-c", "{tmp}/nope.safetensors"], "checkpoint not found"),
    (["{img}", "-o", "{out}", "-c", "{tmp}/img.png"], "not a readable safetensors"),
    (["{img}", "-o", "{out}", "--tile", "30"], "multiple of 4"),
    (["{img}", "-o", "{out}", "--tile", "-8"], "--tile"),
    (["{img}", "-o", "{out}", "--tile", "64", "--overlap", "32"], "too small"),
    (["{img}", "-o", "{out}", "--overlap", "-1"], "--overlap"),
    (["{img}"], "-o OUT"),
    (["{img}", "-o", "{out}", "--in-place"], "not both"),
    (["{img}", "-o", "{out}", "--suffix", "/x"], "--suffix '/x' must not hold a path separator"),
    (["{img}", "-o", "{out}", "--device", " "], "--device is empty"),
    (["{tmp}/empty", "-o", "{out}"], "no images"),
    (["{img}", "-o", "{img}"], "not a folder"),
    (["{img}", "-o", "{out}", "--device", "tpu"], "device"),
])
def test_errors_are_one_line(tmp_path, ckpt, capsys, argv, needle):
    Image.fromarray(_photo()).save(tmp_path / "img.png")
    (tmp_path / "empty").mkdir()
    fill = {"missing": tmp_path / "missing.png", "out": tmp_path / "out", "img": tmp_path / "img.png",
            "tmp": tmp_path}
    argv = [a.format(**fill) for a in argv]
    if "-c" not in argv:
        argv += ["-c", str(ckpt)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 1
    assert err.startswith("interir restore: error:") and err.strip().count("\n") == 0, err
    assert needle in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is missing")
def test_cuda_requested_without_cuda(tmp_path, ckpt, capsys):
    Image.fromarray(_photo()).save(tmp_path / "img.png")
    code, _, err = run_cli(capsys, tmp_path / "img.png", "-o", tmp_path / "out", "-c", ckpt, "--device", "cuda")
    assert code == 1 and "CUDA is not available" in err and err.strip().count("\n") == 0


def test_two_inputs_to_one_output_refused(tmp_path, ckpt, capsys):
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        Image.fromarray(_photo()).save(tmp_path / d / "same.png")
    code, _, err = run_cli(capsys, tmp_path / "x", tmp_path / "y", "-o", tmp_path / "out", "-c", ckpt, "-q")
    assert code == 1 and "same output" in err
    shutil.rmtree(tmp_path / "y")


def test_large_image_is_tiled(tmp_path, ckpt, capsys):
    """An image larger than --tile goes through the tiler and still comes out whole."""
    from skimage import data

    Image.fromarray(data.astronaut()[:90, :130]).save(tmp_path / "big.png")
    code, _, err = run_cli(capsys, tmp_path / "big.png", "-o", tmp_path / "out", "-c", ckpt, "--tile", "64",
                           "--overlap", "8", "-q")
    assert code == 0, err
    assert load_image(tmp_path / "out" / "big.png")[0].shape == (3, 90, 130)


def test_in_place_with_a_suffix_never_replaces_another_input(tmp_path, ckpt, capsys):
    """`photo.png` and `photo_r.png` both inputs: `photo.png`'s output would be `photo_r.png`, an input."""
    (tmp_path / "repro").mkdir()
    Image.fromarray(_photo()).save(tmp_path / "repro" / "photo.png")
    Image.fromarray(_photo(20, 20)).save(tmp_path / "repro" / "photo_r.png")
    before = {p.name: p.read_bytes() for p in (tmp_path / "repro").iterdir()}
    for extra in ([], ["--overwrite"]):
        code, _, err = run_cli(capsys, tmp_path / "repro", "--in-place", "--suffix", "_r", "-c", ckpt, "-q", *extra)
        assert code == 1 and "another input" in err and "--overwrite" not in err, err
        assert err.strip().count("\n") == 0
        assert {p.name: p.read_bytes() for p in (tmp_path / "repro").iterdir()} == before


def test_in_place_keeps_the_files_permissions(tmp_path, ckpt, capsys):
    import stat

    Image.fromarray(_photo()).save(tmp_path / "private.png")
    os.chmod(tmp_path / "private.png", 0o600)
    before = (tmp_path / "private.png").read_bytes()
    code, _, err = run_cli(capsys, tmp_path / "private.png", "--in-place", "-c", ckpt, "-q")
    assert code == 0, err
    assert (tmp_path / "private.png").read_bytes() != before
    assert stat.S_IMODE((tmp_path / "private.png").stat().st_mode) == 0o600


def test_an_unwritable_output_is_found_before_any_work(tmp_path, ckpt, capsys, monkeypatch):
    import interir.checkpoint

    Image.fromarray(_photo()).save(tmp_path / "img.png")
    (tmp_path / "plain_file").write_text("a file, not a folder")

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(interir.checkpoint, "load_model", no_model)
    code, _, err = run_cli(capsys, tmp_path / "img.png", "-o", tmp_path / "plain_file" / "out", "-c", ckpt)
    assert code == 1 and "cannot write the output folder" in err and "plain_file" in err
    assert err.strip().count("\n") == 0


def test_a_checkpoint_with_nan_weights_is_refused(tmp_path, capsys):
    model = interir.build_model("tiny")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    bad = save_weights(tmp_path / "nan.safetensors", model)
    Image.fromarray(_photo()).save(tmp_path / "img.png")
    code, out, err = run_cli(capsys, tmp_path / "img.png", "-o", tmp_path / "out", "-c", bad, "-q")
    assert code == 1 and "NaN or Inf" in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_nan_output_is_an_error_not_a_black_image(tmp_path, capsys):
    class Broken(nn.Module):
        def forward(self, x):
            return x * float("nan")

    with pytest.raises(interir.InterIRError, match="NaN or Inf"):
        restore_file(Broken(), _save_photo(tmp_path / "img.png"), tmp_path / "out.png", tile=0)
    assert not (tmp_path / "out.png").exists()


def _save_photo(path):
    Image.fromarray(_photo()).save(path)
    return path


def test_names_near_the_255_byte_limit_are_written(tmp_path, ckpt, capsys):
    name = "é" * 100 + "x" * 46 + ".png"  # 200 + 46 + 4 = 250 bytes
    assert len(name.encode()) == 250
    Image.fromarray(_photo()).save(tmp_path / name)
    code, _, err = run_cli(capsys, tmp_path / name, "-o", tmp_path / "out", "-c", ckpt, "-q")
    assert code == 0, err
    assert (tmp_path / "out" / name).is_file() and _no_temp_files(tmp_path / "out")


def test_a_killed_runs_temporary_files_are_removed_and_a_live_ones_kept(tmp_path, ckpt, capsys):
    from interir.atomic import temp_name

    (tmp_path / "out").mkdir()
    dead = tmp_path / "out" / temp_name("a.png").replace(f"-{os.getpid()}-", "-999999999-")
    live = tmp_path / "out" / temp_name("b.png")  # this process is alive
    dead.write_bytes(b"partial")
    live.write_bytes(b"being written")
    Image.fromarray(_photo()).save(tmp_path / "a.png")
    code, _, err = run_cli(capsys, tmp_path / "a.png", "-o", tmp_path / "out", "-c", ckpt, "-q")
    assert code == 0, err
    assert not dead.exists() and live.exists()


def test_compile_restores_what_the_eager_network_restores(tmp_path, ckpt, capsys):
    """--compile (torch.compile, ops inlined as the reference, frozen weights) writes what the eager run writes:
    a 16-bit PNG, so that a difference of more than one level of 65535 would show."""
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "rgb16.png", _photo(37, 45).astype(np.uint16) * 257)
    code, _, _ = run_cli(capsys, src, "-o", tmp_path / "eager", "-c", ckpt, "-q")
    assert code == 0
    code, out, err = run_cli(capsys, src, "-o", tmp_path / "compiled", "-c", ckpt, "-q", "--compile")
    assert code == 0 and "restored 1 of 1" in out and "--compile" in err
    eager, _ = load_image(tmp_path / "eager" / "rgb16.png", channels=None)
    compiled, _ = load_image(tmp_path / "compiled" / "rgb16.png", channels=None)
    assert (eager - compiled).abs().max().item() <= 1.5 / 65535


def test_compiled_network_checks_its_input_before_the_graph(ckpt):
    from interir.checkpoint import load_model
    from interir.compiled import CompiledNetwork

    model, _ = load_model(ckpt)
    net = CompiledNetwork(model)
    bad = torch.rand(1, 3, 16, 16)
    bad[0, 1, 2, 3] = float("nan")
    with pytest.raises(interir.InterIRError, match="NaN"):
        net(bad)  # raised by the eager check: nothing was compiled
    assert net.padding_multiple == 4
    assert net.release() is model and model.validate_inputs


@pytest.mark.parametrize("k", [1, 3, 5])
def test_compiled_attention_pools_by_matrices_like_the_reference(k):
    """The attention --compile inlines (pooling by size-built matrices, one graph for every size) is the
    reference's, a NaN plane included."""
    from interir.compiled import INLINE_TABLE
    from interir.ops import reference

    x = torch.randn(2, 3, 13, 11)
    x[1, 2, 4, 5] = float("nan")
    theta = torch.tensor(0.1)
    with torch.no_grad():
        got = INLINE_TABLE["explainable_attention"](x, theta, k, 0.5)
        want = reference.explainable_attention(x, theta, k, 0.5)
    assert torch.isnan(got[1, 2]).all() and torch.isnan(want[1, 2]).all()
    finite = ~torch.isnan(want)
    assert torch.equal(finite, ~torch.isnan(got))
    assert (got[finite] - want[finite]).abs().max().item() <= 1e-6


def test_compiled_network_falls_back_to_the_eager_network_when_compiling_fails(ckpt, capsys):
    from interir.checkpoint import load_model
    from interir.compiled import CompiledNetwork

    model, _ = load_model(ckpt)
    net = CompiledNetwork(model)

    def broken(x):
        raise RuntimeError("a compiler failure")

    net._compiled = broken
    x = torch.rand(1, 3, 21, 30)
    got = net(x)
    with torch.no_grad():
        want = model(x)
    assert torch.equal(got, want)
    assert "--compile failed (a compiler failure); the network runs eagerly" in capsys.readouterr().err


def test_in_place_without_a_suffix_refuses_skip_existing(tmp_path, ckpt, capsys):
    """Every in-place output is its own input, so --skip-existing would skip all: refused before any work."""
    (tmp_path / "shots").mkdir()
    Image.fromarray(_photo()).save(tmp_path / "shots" / "photo.png")
    before = (tmp_path / "shots" / "photo.png").read_bytes()
    code, _, err = run_cli(capsys, tmp_path / "shots", "--in-place", "--skip-existing", "-c", ckpt, "-q")
    assert code == 1 and "--skip-existing" in err and err.strip().count("\n") == 0, err
    assert (tmp_path / "shots" / "photo.png").read_bytes() == before


def test_an_output_that_is_a_folder_is_refused_before_restoring(tmp_path, ckpt, capsys):
    (tmp_path / "shots").mkdir()
    Image.fromarray(_photo()).save(tmp_path / "shots" / "photo.png")
    (tmp_path / "out" / "photo.png").mkdir(parents=True)  # a folder where the restored file would go
    code, _, err = run_cli(capsys, tmp_path / "shots", "-o", tmp_path / "out", "-c", ckpt, "-q", "--overwrite")
    assert code == 1 and "is a folder" in err and err.strip().count("\n") == 0, err
    assert list((tmp_path / "out" / "photo.png").iterdir()) == []


def test_an_output_named_like_an_image_is_refused_not_made_a_folder(tmp_path, ckpt, capsys):
    """`-o restored.png` would otherwise create a folder named restored.png."""
    Image.fromarray(_photo()).save(tmp_path / "photo.png")
    code, _, err = run_cli(capsys, tmp_path / "photo.png", "-o", tmp_path / "restored.PNG", "-c", ckpt, "-q")
    assert code == 1 and "looks like an image file" in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "restored.PNG").exists()
    (tmp_path / "made.png").mkdir()  # an existing folder of that name is still a folder
    code, _, err = run_cli(capsys, tmp_path / "photo.png", "-o", tmp_path / "made.png", "-c", ckpt, "-q")
    assert code == 0 and (tmp_path / "made.png" / "photo.png").is_file(), err


def test_an_in_place_run_with_a_suffix_resumes_with_skip_existing(tmp_path, ckpt, capsys):
    """The second run sees photo_r.png (the first run's output) among the inputs: with --skip-existing it is taken
    as done, neither refused nor restored into photo_r_r.png."""
    (tmp_path / "shots").mkdir()
    Image.fromarray(_photo()).save(tmp_path / "shots" / "photo.png")
    code, _, err = run_cli(capsys, tmp_path / "shots", "--in-place", "--suffix", "_r", "-c", ckpt, "-q")
    assert code == 0, err
    first = (tmp_path / "shots" / "photo_r.png").read_bytes()
    code, out, err = run_cli(capsys, tmp_path / "shots", "--in-place", "--suffix", "_r", "--skip-existing",
                             "-c", ckpt, "-q")
    assert code == 0 and "taken as earlier restorations" in err, err
    assert sorted(p.name for p in (tmp_path / "shots").iterdir()) == ["photo.png", "photo_r.png"]
    assert (tmp_path / "shots" / "photo_r.png").read_bytes() == first
