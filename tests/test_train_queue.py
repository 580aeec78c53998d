"""scripts/train_queue.py (docs/ablation.md): configs trained in turn, resumed across calls, each evaluation kept
beside its config; shards split the list."""
import json
import os
from pathlib import Path

import pytest

from tests.conftest import load_script
from tests.test_train import _photos

ROOT = Path(__file__).resolve().parents[1]
queue = load_script("train_queue")


def _config(folder: Path, name: str, photos: Path, steps: int) -> Path:
    path = folder / f"{name}.yml"
    path.write_text(f"name: {name}\nmodel: {{name: interir, preset: tiny}}\n"
                    f"datasets:\n  train: {{type: mdir, root: {photos}, patch_size: 32, batch_size_per_gpu: 2, "
                    f"num_workers: 0}}\ntrain: {{total_iter: {steps}}}\n"
                    f"logger: {{tensorboard: false, save_checkpoint_freq: 2, print_freq: 2}}\n")
    return path


@pytest.mark.slow
def test_queue_trains_evaluates_and_skips_what_is_done(tmp_path, monkeypatch, capsys):
    from interir.data.synth import build_testset

    photos = _photos(tmp_path / "photos", n=2, size=40)
    build_testset(photos, tmp_path / "heldout", seed=0, combos=["N"])
    a, b = _config(tmp_path, "run_a", photos, 4), _config(tmp_path, "run_b", photos, 2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    assert queue.main([str(a), str(b), "--data", str(tmp_path / "heldout")]) == 0
    for name in ("run_a", "run_b"):
        saved = json.loads((tmp_path / f"{name}.results.json").read_text())
        assert saved["rows"][-1]["set"] == "average" and saved["checkpoint"].endswith(name)
    assert json.loads((tmp_path / "experiments" / "run_a" / "latest.json").read_text())["step"] == 4
    capsys.readouterr()
    assert queue.main([str(a), str(b), "--data", str(tmp_path / "heldout")]) == 0  # nothing left to do
    out = capsys.readouterr().out
    assert "run_a.yml done" in out and "run_b.yml done" in out and "training" not in out


def test_shards_split_the_list_and_bad_arguments_stop_before_any_work(tmp_path, capsys):
    configs = [tmp_path / f"c{i}.yml" for i in range(5)]
    for c in configs:
        c.write_text("name: x\n")
    args = queue.parse_args([*map(str, configs), "--data", str(tmp_path), "--shard", "1/2"])
    assert args.configs == [configs[1], configs[3]]
    for bad in (["--shard", "2/2"], ["--shard", "a/b"], ["--data", str(tmp_path / "missing")]):
        argv = [str(configs[0]), "--data", str(tmp_path), *bad]
        with pytest.raises(SystemExit):
            queue.parse_args(argv)
        assert "\n" not in capsys.readouterr().err.strip().splitlines()[-1]
    with pytest.raises(SystemExit):
        queue.parse_args([str(tmp_path / "none.yml"), "--data", str(tmp_path)])
    assert "no such config" in capsys.readouterr().err
    assert queue.results_path(Path("configs/ablation/x.yml")) == Path("configs/ablation/x.results.json")
