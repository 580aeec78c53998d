"""scripts/train_queue.py (docs/ablation.md): configs trained in turn, resumed across calls, each evaluation kept
beside its config; shards split the list; --carry keeps the newest checkpoint between checkouts."""
import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
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
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    assert queue.main([str(a), str(b), "--data", str(tmp_path / "heldout")]) == 0
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers  # left as they were
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


def _carry_cfg(tmp_path: Path, folder: str):
    from tests.test_train import _cfg

    return _cfg(tmp_path, **{"path.experiments_root": tmp_path / folder, "logger.save_checkpoint_freq": 2})


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_carried_checkpoint_resumes_a_fresh_checkout_exactly(tmp_path):
    """--carry: the newest checkpoint alone is kept in the carry folder; copied into an empty experiment folder
    (a fresh checkout), the run resumes to the same losses and weights as one that never stopped."""
    import torch

    from interir.train import train

    full = train(_carry_cfg(tmp_path, "whole"), progress=False)
    folder, carried = tmp_path / "exp" / "run", tmp_path / "carry" / "run"
    assert queue.carry_newest(folder, carried) is None and not carried.exists()  # nothing trained yet
    first = train(_carry_cfg(tmp_path, "exp"), progress=False, stop_at=4)
    assert queue.carry_newest(folder, carried) == 4
    assert _files(carried) == ["latest.json", "step_00000004.ema.safetensors", "step_00000004.safetensors",
                               "step_00000004.state.pt"]
    shutil.rmtree(folder)  # the experiment folder does not survive the checkout
    assert queue.restore_carried(carried, folder) == 4
    assert queue.restore_carried(carried, folder) is None  # the folder is as new as the carried checkpoint
    second = train(_carry_cfg(tmp_path, "exp"), resume=True, progress=False)
    assert len(second["losses"]) == 6
    np.testing.assert_allclose(first["losses"] + second["losses"], full["losses"], rtol=1e-5, atol=1e-7)
    for (name, a), b in zip(full["ema"].state_dict().items(), second["ema"].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert queue.carry_newest(folder, carried) == 10  # replaces the older one, leaving nothing else behind
    assert _files(carried) == ["latest.json", "step_00000010.ema.safetensors", "step_00000010.safetensors",
                               "step_00000010.state.pt"]
    assert _files(carried.parent) == ["run"]


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_queue_carries_its_newest_checkpoint_and_a_finished_run_removes_it(tmp_path, stop):
    """SIGTERM or SIGINT to the queue alone stops the training and carries its newest checkpoint, also when the queue
    was started in the background by a shell (SIGINT ignored); the next queue, in a fresh checkout (no
    experiments/), resumes from it, evaluates, and removes the carried folder."""
    import subprocess
    import sys
    import time

    from interir.data.synth import build_testset

    photos = _photos(tmp_path / "photos", n=2, size=40)
    build_testset(photos, tmp_path / "heldout", seed=0, combos=["N"])
    config = _config(tmp_path, "run_a", photos, 400)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, str(ROOT / "scripts" / "train_queue.py"), str(config), "--data", str(tmp_path / "heldout"),
            "--carry", "carry"]
    latest = tmp_path / "experiments" / "run_a" / "latest.json"
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # as `queue … &` does
    deadline = time.monotonic() + 120
    while not latest.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert latest.exists(), proc.communicate()[0]
    proc.send_signal(stop)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out
    step = json.loads(latest.read_text())["step"]
    assert 0 < step < 400 and f"the checkpoint of step {step} is carried in carry/run_a" in out
    assert json.loads((tmp_path / "carry" / "run_a" / "latest.json").read_text())["step"] == step

    shutil.rmtree(tmp_path / "experiments")
    config.write_text(config.read_text().replace("total_iter: 400", f"total_iter: {step + 2}"))
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resuming from the checkpoint of step {step} carried in carry/run_a" in done.stdout
    assert json.loads(latest.read_text())["step"] == step + 2
    assert (tmp_path / "run_a.results.json").is_file() and not (tmp_path / "carry" / "run_a").exists()


def test_carry_only_copies_without_training_and_needs_a_carry_folder(tmp_path, capsys):
    from interir.train import train

    train(_carry_cfg(tmp_path, "experiments"), progress=False, stop_at=2)
    config = tmp_path / "run.yml"
    config.write_text(f"name: run\npath: {{experiments_root: {tmp_path / 'experiments'}}}\n")
    assert queue.main([str(config), "--data", str(tmp_path), "--carry", str(tmp_path / "carry"), "--carry-only"]) == 0
    assert json.loads((tmp_path / "carry" / "run" / "latest.json").read_text())["step"] == 2
    assert "step 2 carried in" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        queue.parse_args([str(config), "--data", str(tmp_path), "--carry-only"])
    assert "--carry-only needs --carry DIR" in capsys.readouterr().err
