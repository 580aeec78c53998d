"""scripts/gpu_train_session.py (docs/gpu.md, "Training on a leased GPU"): probe, train, eval and pack, through
its --dry-run on this CPU; the packing limits and the group rule on their own."""
import tarfile
from pathlib import Path

import pytest

from tests.conftest import load_script
from tests.test_train import _photos

session = load_script("gpu_train_session")


def _config(folder: Path, name: str, root: Path, seed: int) -> Path:
    path = folder / f"{name}.yml"
    path.write_text(f"name: {name}\nseed: {seed}\nmodel: {{name: interir, preset: tiny}}\n"
                    f"datasets:\n  train: {{type: mdir, root: {root}, patch_size: 32, num_workers: 0}}\n"
                    f"logger: {{tensorboard: false}}\n")
    return path


@pytest.mark.slow
def test_dry_run_trains_evaluates_and_packs_every_config(tmp_path, monkeypatch):
    from interir.data.synth import build_testset

    photos = _photos(tmp_path / "photos", n=2, size=40)
    build_testset(photos, tmp_path / "heldout", seed=0, combos=["N"])
    a = _config(tmp_path, "run_a", photos, 0)
    b = _config(tmp_path, "run_b", photos, 1)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert session.main(["--dry-run", "--out", str(out), "--work", str(tmp_path / "work"), "--seconds", "300",
                         "--reserve", "100", "--data", str(tmp_path / "heldout"), f"g:{a}", f"g:{b}"]) == 0
    summary = (out / "summary.txt").read_text()
    for name in ("run_a", "run_b"):
        assert f"probe {name}: ok" in summary and f"train {name}: ok, last step 8 of 8" in summary, summary
        assert f"eval {name}: ok; average" in summary, summary
    files = sorted(p.name for p in out.iterdir())
    assert files == ["logs1.tar", "summary.txt", "weights1.tar"], files
    with tarfile.open(out / "weights1.tar") as tar:
        assert sorted(tar.getnames()) == ["run_a.safetensors", "run_b.safetensors"]
        tar.extractall(tmp_path / "weights", filter="data")
    with tarfile.open(out / "logs1.tar") as tar:
        assert {"run_a.train.log", "run_a.results.json", "run_b.train.log", "run_b.results.json"} <= set(
            tar.getnames())
    from interir.checkpoint import load_model
    model, meta = load_model(tmp_path / "weights" / "run_a.safetensors")
    assert meta["model"]["preset"] == "tiny"


def test_pack_keeps_every_archive_under_the_limit(tmp_path):
    files = []
    for i, size in enumerate([700, 600, 300, 200, 100]):
        f = tmp_path / f"f{i}.bin"
        f.write_bytes(b"x" * size)
        files.append(f)
    made = session.pack(files, tmp_path, "part", limit=1000)
    names = [sorted(tarfile.open(p).getnames()) for p in made]
    assert sorted(n for group in names for n in group) == [f.name for f in files]
    for group in names:
        assert sum((tmp_path / n).stat().st_size for n in group) <= 1000, names


def test_group_tags_and_plain_paths(tmp_path):
    plain = tmp_path / "a:b.yml"  # an existing file whose name holds a colon is a path, not a tag
    plain.write_text("")
    assert session.group_of(str(plain)) == (None, str(plain))
    assert session.group_of("ablation:configs/x.yml") == ("ablation", "configs/x.yml")
    assert session.group_of("configs/x.yml") == (None, "configs/x.yml")


def test_bad_settings_are_refused(capsys):
    with pytest.raises(SystemExit):
        session.parse_args(["--out", "o", "--margin", "1.5", "c.yml"])
    assert "--margin" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        session.parse_args(["--out", "o", "--seconds", "50", "--reserve", "80", "c.yml"])
    assert "--seconds above --reserve" in capsys.readouterr().err
