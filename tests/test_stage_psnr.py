"""scripts/stage_psnr.py: each stage's mean and PSNR on a synthesised set; its last stage is the network's output."""
import math
import re

import torch

from interir.checkpoint import load_model, shipped_checkpoint
from interir.data.imageio import load_image
from tests.conftest import load_script
from tests.test_train import _photos

stage_psnr = load_script("stage_psnr")


def test_stage_lines_end_with_the_output_psnr(tmp_path, capsys):
    from interir.data.synth import build_testset

    build_testset(_photos(tmp_path / "photos", n=2, size=40), tmp_path / "set", seed=0, combos=["H"], progress=False)
    weights = str(shipped_checkpoint())
    assert stage_psnr.main([weights, "--data", str(tmp_path / "set"), "--combo", "H"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4  # two images, each with its means and one checkpoint's line
    model, _ = load_model(weights)
    for head, stages in zip(lines[::2], lines[1::2]):
        name = head.split(":")[0]
        x, _ = load_image(tmp_path / "set" / "H" / "input" / f"{name}.png")
        y, _ = load_image(tmp_path / "set" / "target" / f"{name}.png")
        assert f"input mean {x.mean():.3f}, target mean {y.mean():.3f}" in head
        values = re.findall(r"(after [^:]+): ([0-9.]+), ([0-9.]+) dB", stages)
        assert [v[0] for v in values] == model.stage_labels(len(model.blocks) + 1)
        with torch.no_grad():
            out = model(x[None])[0].clamp(0, 1)
        psnr = 10 * math.log10(1 / torch.mean((out - y) ** 2).item())
        assert values[-1][1:] == (f"{out.mean():.3f}", f"{psnr:.2f}")


def test_a_folder_that_is_not_a_set_is_a_one_line_error(tmp_path, capsys):
    assert stage_psnr.main([str(shipped_checkpoint()), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "expected H/input and target/ folders" in err
