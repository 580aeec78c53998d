"""scripts/prepare_demo_photos.py --wallpapers: the largest version of each wallpaper, scaled to ≤ 1280 pixels."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import load_script


@pytest.fixture
def script():
    return load_script("prepare_demo_photos")


def _image(path: Path, w: int, h: int, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def test_the_largest_version_of_each_wallpaper_is_chosen(tmp_path, script, monkeypatch):
    _image(tmp_path / "Beta" / "contents" / "images" / "640x480.png", 640, 480, 10)
    _image(tmp_path / "Beta" / "contents" / "images" / "2560x1600.png", 2560, 1600, 20)
    _image(tmp_path / "Alpha" / "contents" / "images" / "800x600.jpg", 800, 600, 30)
    (tmp_path / "Empty" / "contents" / "images").mkdir(parents=True)
    monkeypatch.setattr(script, "WALLPAPERS", tmp_path)
    assert [(n, f.name) for n, f in script._wallpapers()] == [("Alpha", "800x600.jpg"), ("Beta", "2560x1600.png")]


def test_no_wallpapers_is_one_line(tmp_path, script, monkeypatch, capsys):
    monkeypatch.setattr(script, "WALLPAPERS", tmp_path / "none")
    if any(not (script.OPENCV / n).is_file() for n in script.TRAIN_OPENCV + script.HELDOUT_OPENCV):
        pytest.skip("opencv-doc samples not installed (apt-get install opencv-doc)")
    assert script.main([str(tmp_path / "out"), "--wallpapers"]) == 1
    assert "apt-get install plasma-workspace-wallpapers" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_wallpapers_join_the_training_photos_scaled_down(tmp_path, script, monkeypatch):
    if any(not (script.OPENCV / n).is_file() for n in script.TRAIN_OPENCV + script.HELDOUT_OPENCV):
        pytest.skip("opencv-doc samples not installed (apt-get install opencv-doc)")
    _image(tmp_path / "papers" / "Wide" / "contents" / "images" / "3000x1000.png", 3000, 1000, 40)
    monkeypatch.setattr(script, "WALLPAPERS", tmp_path / "papers")
    assert script.main([str(tmp_path / "out"), "--wallpapers"]) == 0
    train = sorted(p.name for p in (tmp_path / "out" / "train").iterdir())
    assert "wallpaper_Wide.png" in train and len(train) == len(script.TRAIN_SKIMAGE + script.TRAIN_OPENCV) + 1
    assert Image.open(tmp_path / "out" / "train" / "wallpaper_Wide.png").size == (1280, 427)
    assert not any(p.name.startswith("wallpaper_") for p in (tmp_path / "out" / "heldout").iterdir())


def test_an_earlier_set_is_replaced_only_when_asked(tmp_path, script, capsys):
    if any(not (script.OPENCV / n).is_file() for n in script.TRAIN_OPENCV + script.HELDOUT_OPENCV):
        pytest.skip("opencv-doc samples not installed (apt-get install opencv-doc)")
    mine = tmp_path / "out" / "train" / "rocket.png"
    _image(mine, 8, 8, 7)
    assert script.main([str(tmp_path / "out")]) == 1
    assert "--overwrite" in capsys.readouterr().err and Image.open(mine).size == (8, 8)
    assert script.main([str(tmp_path / "out"), "--overwrite"]) == 0
    assert Image.open(mine).size != (8, 8)
