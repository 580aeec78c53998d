"""`interir explain` (stage images, explainable-conv masks and attention, step sizes, HTML page, t-SNE of a synth
set), the torch t-SNE, and the Pillow figure helpers."""
import csv
import json
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

import interir
from interir import figures as fig
from interir.checkpoint import save_weights
from interir.cli import main
from interir.tsne import conditional_probabilities, neighbour_agreement, tsne
from tests.conftest import wake_up


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return save_weights(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", wake_up(interir.build_model("tiny")))


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from skimage import data

    path = tmp_path_factory.mktemp("img") / "cat.png"
    Image.fromarray(data.chelsea()[60:124, 120:200]).save(path)  # 80×64
    return path


def run_cli(capsys, *argv):
    code = main(["explain", *map(str, argv)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _referenced(html_text):
    return set(re.findall(r'src="([^"]+)"', html_text))


def test_explain_writes_figures_and_page(tmp_path, ckpt, photo, capsys):
    out = tmp_path / "ex"
    code, stdout, err = run_cli(capsys, ckpt, photo, "-o", out)
    assert code == 0, err
    n_blocks = interir.build_model("tiny").cfg.num_blocks  # 1
    files = {p.name for p in out.iterdir()}
    assert len([f for f in files if f.startswith("stage_")]) == n_blocks + 1
    assert len([f for f in files if f.startswith("masks_")]) == n_blocks + 1
    assert len([f for f in files if re.fullmatch(r"attention_(\d+|final)\.png", f)]) == n_blocks + 1
    assert {"index.html", "explain.json", "input.png", "restored.png", "stages.png", "step_sizes.png",
            "attention_summary.png", "masks_final.png"} <= files
    page = (out / "index.html").read_text()
    pngs = {f for f in files if f.endswith(".png")}
    assert _referenced(page) == pngs  # every figure shown, nothing missing
    assert "http://" not in page and "https://" not in page  # self-contained
    info = json.loads((out / "explain.json").read_text())
    assert len(info["step_sizes"]) == n_blocks + 1 and info["explainable"]
    assert len(info["blocks"]) == n_blocks + 1
    assert [len(b["convs"]) for b in info["blocks"]] == [9] * n_blocks + [5]  # RESM 5 + DMUM 2 + MUM 2; final RESM 5
    for b in info["blocks"]:
        for c in b["convs"]:
            assert 0 <= c["mask_active_fraction"] <= 1
            assert math.isclose(sum(map(sum, c["attention_mean"])), 9, rel_tol=1e-4)  # 9·softmax averages to 1
    with Image.open(out / "stage_02.png") as im:
        assert im.size == (80, 64)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # staging folder gone
    assert "index.html" in stdout


def test_max_size_and_overwrite(tmp_path, ckpt, photo, capsys):
    out = tmp_path / "ex"
    out.mkdir()
    (out / "mine.txt").write_text("user file")
    code, _, err = run_cli(capsys, ckpt, photo, "-o", out, "--max-size", "40")
    assert code == 1 and "not empty" in err and err.strip().count("\n") == 0
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    code, _, err = run_cli(capsys, ckpt, photo, "-o", out, "--max-size", "40", "--overwrite")
    assert code == 0, err
    with Image.open(out / "input.png") as im:
        assert max(im.size) == 40
    assert (out / "mine.txt").read_text() == "user file"  # files it did not write are left alone


def test_model_without_explainable_convs(tmp_path, photo, capsys):
    plain = save_weights(tmp_path / "plain.safetensors", interir.build_model("tiny", explainable=False))
    out = tmp_path / "ex"
    code, _, err = run_cli(capsys, plain, photo, "-o", out)
    assert code == 0, err
    files = {p.name for p in out.iterdir()}
    assert len([f for f in files if f.startswith("stage_")]) == 2
    assert not [f for f in files if f.startswith(("masks_", "attention"))]
    page = (out / "index.html").read_text()
    assert "Not applicable" in page and _referenced(page) == {f for f in files if f.endswith(".png")}
    code, _, err = run_cli(capsys, plain, photo, "-o", tmp_path / "ex2", "--tsne", tmp_path)
    assert code == 1 and err.strip().count("\n") == 0


def test_dgunet_gets_stages_only(tmp_path, photo, capsys):
    from interir.checkpoint import save_weights
    from interir.model import build

    model = build({"name": "dgunet", "preset": "dgunet-tiny"}).eval()
    ck = save_weights(tmp_path / "dg.safetensors", model)
    code, _, err = run_cli(capsys, ck, photo, "-o", tmp_path / "ex", "--max-size", "48")
    assert code == 0, err
    files = {p.name for p in (tmp_path / "ex").iterdir()}
    assert len([f for f in files if f.startswith("stage_")]) == model.cfg.num_stages  # its forward returns them all
    assert not [f for f in files if f.startswith("masks_")]
    assert "Not applicable" in (tmp_path / "ex" / "index.html").read_text()


@pytest.mark.parametrize("argv, needle", [
    (["{tmp}/none.safetensors", "{img}", "-o", "{out}"], "checkpoint not found"),
    (["{ckpt}", "{tmp}/none.png", "-o", "{out}"], "image not found"),
    (["{ckpt}", "{img}"], "-o OUTDIR"),
    (["{ckpt}", "{img}", "-o", "{out}", "--max-size", "-5"], "--max-size"),
    (["{ckpt}", "{img}", "-o", "{out}", "--tsne", "{tmp}"], "not a synthetic test set"),
    (["{ckpt}", "{img}", "-o", "{out}", "--perplexity", "0"], "--perplexity"),
    (["{ckpt}", "{img}", "-o", "{out}", "--perplexity", "nan"], "--perplexity"),
    (["{ckpt}", "{img}", "-o", "{out}", "--perplexity", "inf"], "--perplexity"),
    (["{ckpt}", "{tmp}/bad.png", "-o", "{out}"], "cannot read image"),
    (["{ckpt}", "{img}", "-o", "{img}"], "not a folder"),
    (["{ckpt}", "{img}", "{img}", "-o", "{out}"], "one image"),
    (["{img}", "{img}", "-o", "{out}"], "are both images"),
])
def test_errors_are_one_line(tmp_path, ckpt, photo, capsys, argv, needle):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    fill = {"tmp": tmp_path, "img": photo, "ckpt": ckpt, "out": tmp_path / "out"}
    code, _, err = run_cli(capsys, *[a.format(**fill) for a in argv])
    assert code == 1
    assert err.startswith("interir explain: error:") and err.strip().count("\n") == 0, err
    assert needle in err, err
    assert not (tmp_path / "out").exists()  # nothing half-written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_an_input_in_the_output_folder_is_never_replaced(tmp_path, ckpt, photo, capsys):
    """The image lies in OUTDIR under a name `explain` writes (input.png): refused, --overwrite or not."""
    out = tmp_path / "ex"
    out.mkdir()
    image = out / "input.png"
    image.write_bytes(photo.read_bytes())
    for extra in ([], ["--overwrite"]):
        code, _, err = run_cli(capsys, ckpt, image, "-o", out, *extra)
        assert code == 1 and err.strip().count("\n") == 0, err
        assert "under a name `explain` writes" in err, err
        assert sorted(p.name for p in out.iterdir()) == ["input.png"]
        assert image.read_bytes() == photo.read_bytes()


def test_overwrite_removes_only_files_explain_writes(tmp_path, ckpt, photo, capsys):
    """A tampered explain.json (other files, '..', folders, absolute paths) deletes nothing it names, and a bad
    entry does not stop the run halfway."""
    out = tmp_path / "ex"
    assert run_cli(capsys, ckpt, photo, "-o", out)[0] == 0
    (tmp_path / "precious.txt").write_text("outside")
    (out / "mine.txt").write_text("inside")
    (out / "sub").mkdir()
    (out / "sub" / "stage_01.png").write_bytes(b"user's")
    (out / "stage_99.png").write_bytes(b"an old stage of a deeper model")  # explain's own: removed
    listed = json.loads((out / "explain.json").read_text())
    listed["files"] += ["mine.txt", "../precious.txt", "..", "sub/stage_01.png", str(tmp_path / "precious.txt"),
                        "sub", "stage_99.png", 7]
    (out / "explain.json").write_text(json.dumps(listed))
    code, _, err = run_cli(capsys, ckpt, photo, "-o", out, "--overwrite")
    assert code == 0, err
    assert (tmp_path / "precious.txt").read_text() == "outside" and (out / "mine.txt").read_text() == "inside"
    assert (out / "sub" / "stage_01.png").read_bytes() == b"user's"
    assert not (out / "stage_99.png").exists() and (out / "index.html").is_file()


def test_an_image_alone_is_explained_with_the_shipped_model(tmp_path, photo, capsys):
    code, stdout, err = run_cli(capsys, photo, "-o", tmp_path / "ex", "--max-size", "32")
    assert code == 0, err
    summary = json.loads((tmp_path / "ex" / "explain.json").read_text())
    assert summary["checkpoint"].endswith("interir_small.safetensors") and summary["model"]["preset"] == "small"


def test_a_killed_runs_staging_folder_is_removed(tmp_path, ckpt, photo, capsys):
    import os

    from interir.atomic import temp_name

    stale = tmp_path / temp_name("ex", suffix="").replace(f"-{os.getpid()}-", "-999999999-")
    stale.mkdir()
    (stale / "input.png").write_bytes(b"half")
    code, _, err = run_cli(capsys, ckpt, photo, "-o", tmp_path / "ex")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ex"]


# ------------------------------------------------------------------------------------------------ t-SNE


def _clusters(k=5, per=30, dim=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g) * 8
    x = torch.cat([c + torch.randn(per, dim, generator=g) for c in centres])
    return x, [i for i in range(k) for _ in range(per)]


def test_tsne_separates_gaussian_clusters():
    x, labels = _clusters()
    y = tsne(x, perplexity=20, n_iter=500, seed=1)
    assert y.shape == (150, 2) and torch.isfinite(y).all()
    assert neighbour_agreement(y, labels) > 0.9
    # and clusters stay apart: mean within-cluster distance well below between-cluster distance
    lab = torch.tensor(labels)
    d = torch.cdist(y, y)
    same = lab[:, None] == lab[None, :]
    assert d[same].mean() < 0.5 * d[~same].mean()


def test_tsne_is_deterministic_under_a_seed():
    x, _ = _clusters(k=3, per=20, seed=2)
    a = tsne(x, perplexity=10, n_iter=300, seed=7)
    b = tsne(x, perplexity=10, n_iter=300, seed=7)
    c = tsne(x, perplexity=10, n_iter=300, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_perplexity_calibration():
    x = torch.randn(60, 5, dtype=torch.float64) * 3
    d2 = torch.cdist(x, x) ** 2
    p, beta = conditional_probabilities(d2, 12.0)
    assert torch.allclose(p.sum(1), torch.ones(60, dtype=torch.float64))
    assert (p.diagonal() == 0).all() and (beta > 0).all()
    entropy = -(p * p.clamp_min(1e-300).log()).sum(1)
    assert torch.allclose(entropy.exp(), torch.full((60,), 12.0, dtype=torch.float64), rtol=1e-3)


def test_tsne_cli_on_a_synth_test_set(tmp_path, ckpt, photo, capsys):
    from skimage import data

    from interir.data.degrade import COMBINATIONS
    from interir.data.synth import build_testset

    clean = tmp_path / "clean"
    clean.mkdir()
    Image.fromarray(data.astronaut()[:48, 200:248]).save(clean / "a.png")
    Image.fromarray(data.coffee()[100:148, 300:348]).save(clean / "b.png")
    build_testset(clean, tmp_path / "set", seed=0, progress=False)
    out = tmp_path / "ex"
    code, _, err = run_cli(capsys, ckpt, photo, "-o", out, "--tsne", tmp_path / "set", "--tsne-size", "48", "-q")
    assert code == 0, err
    rows = list(csv.DictReader((out / "tsne.csv").open()))
    assert len(rows) == 14 and {r["combo"] for r in rows} == set(COMBINATIONS)
    assert all(math.isfinite(float(r["x"])) and math.isfinite(float(r["y"])) for r in rows)
    assert "tsne.png" in _referenced((out / "index.html").read_text())
    info = json.loads((out / "explain.json").read_text())["tsne"]
    assert info["n"] == 14 and info["perplexity"] <= 13 / 3 + 1e-9


# ------------------------------------------------------------------------------------------------ figures


def test_figure_helpers():
    img = fig.bar_chart([0.01, 0.02, -0.005], ["a", "b", "c"], title="eta", size=(300, 200), reference=0.01)
    assert img.size == (300, 200) and img.mode == "RGB"
    sc = fig.scatter(np.random.default_rng(0).normal(size=(20, 2)), ["x"] * 10 + ["y"] * 10, size=(320, 240))
    assert sc.size == (320, 240)
    cm = np.asarray(fig.apply_colormap(np.array([[0.0, 1.0]]), "viridis", 0, 1))
    assert tuple(cm[0, 0]) == (68, 1, 84) and tuple(cm[0, 1]) == (253, 231, 37)
    hm = fig.heatmap(torch.ones(3, 3), cell=20)
    assert hm.size == (60, 60)
    g = fig.grid([Image.new("RGB", (10, 20)), Image.new("RGB", (30, 5)), Image.new("RGB", (7, 7))], ncols=2, pad=2)
    assert g.size == (10 + 30 + 3 * 2, 20 + 7 + 3 * 2)
    assert fig.caption(Image.new("RGB", (50, 10)), "two\nlines").height > 10
    assert fig.to_pil(torch.rand(1, 8, 9)).size == (9, 8)
