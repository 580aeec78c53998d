"""`interir demo`: runs offline, prints before/after metrics, writes one picture, refuses to clobber."""
import pytest
import torch

import interir
from interir.checkpoint import load_model, save_weights, shipped_checkpoint
from interir.cli import main
from interir.data.degrade import COMBINATIONS
from interir.demo import BUNDLED_PHOTO


def test_demo_with_a_given_checkpoint(tmp_path, capsys):
    ckpt = save_weights(tmp_path / "tiny.safetensors", interir.build_model("tiny"))
    out = tmp_path / "demo.png"
    assert main(["demo", "-c", str(ckpt), "--combo", "H+N", "--seed", "2", "--max-size", "64", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "degraded   PSNR" in text and "restored   PSNR" in text and "H+N" in text
    from PIL import Image

    assert Image.open(out).size[0] > 3 * 64  # degraded | restored | clean, stages, attention
    first = out.read_bytes()
    assert main(["demo", "-c", str(ckpt), "--max-size", "64", "-o", str(out)]) == 0  # its own picture: rerunnable
    assert out.read_bytes() != first  # another seed/combination: a new picture
    other = tmp_path / "holiday.png"
    Image.new("RGB", (8, 8)).save(other)
    before = other.read_bytes()
    capsys.readouterr()
    assert main(["demo", "-c", str(ckpt), "--max-size", "64", "-o", str(other)]) == 1  # someone else's: refused
    assert "--overwrite" in capsys.readouterr().err and other.read_bytes() == before


def test_the_readmes_first_command_runs_twice(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["demo", "--max-size", "48"]) == 0
    assert (tmp_path / "interir_demo.png").is_file() and "wrote interir_demo.png" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["demo", "--image", "/nonexistent.png"], "image not found"),
    (["demo", "--combo", "X+Y"], "combination"),
    (["demo", "--max-size", "4"], "--max-size"),
])
def test_demo_errors_are_one_line(tmp_path, capsys, argv, message):
    ckpt = save_weights(tmp_path / "tiny.safetensors", interir.build_model("tiny"))
    assert main(argv + ["-c", str(ckpt), "-o", str(tmp_path / "d.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err.lower() or message in err, err
    assert "\n" not in err


def test_half_precision_weights_round_trip(tmp_path):
    model = interir.build_model("tiny")
    path = save_weights(tmp_path / "h.safetensors", model, dtype=torch.float16)
    loaded, _ = load_model(path)
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert b.dtype == torch.float32
        torch.testing.assert_close(b, a.half().float())


def test_shipped_model_restores_the_bundled_photo(tmp_path, capsys):
    """The shipped small model, offline: each of the 7 combinations of the bundled (held-out) photo gets better."""
    path = shipped_checkpoint()
    assert path.stat().st_size < 10 * 2**20
    from interir.demo import run_demo

    for combo in COMBINATIONS:
        _, _, _, m, _ = run_demo(BUNDLED_PHOTO, combo, 0, None, 128)
        assert m["psnr_out"] > m["psnr_in"], (combo, m)


def test_demo_refuses_a_photo_too_small_to_score_and_a_folder_as_output(tmp_path, capsys):
    from PIL import Image

    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (2, 40), "grey").save(tiny)
    assert main(["demo", "--image", str(tiny), "-o", str(tmp_path / "d.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert "needs at least 11×11" in err and "\n" not in err and not (tmp_path / "d.png").exists()
    assert main(["demo", "--combo", "H+Q", "-o", str(tmp_path / "d.png")]) == 1
    assert "unknown degradation combination" in capsys.readouterr().err
    assert main(["demo", "--image", str(tmp_path), "-o", str(tmp_path / "d.png")]) == 1
    assert "is a folder; give one photo" in capsys.readouterr().err
    (tmp_path / "dir.png").mkdir()
    assert main(["demo", "-o", str(tmp_path / "dir.png"), "--overwrite"]) == 1
    err = capsys.readouterr().err.strip()
    assert "is a folder" in err and "\n" not in err
